{#-
    Engage audience (and journey step) entries and exits over a period, per audience, with today's members.
    The period is the 30 days up to now (or var segment_accounts__account_activity_as_of); change `days` for
    another length. An entry is a change to member, an exit a change from member to not; a first "not a
    member" is neither.
-#}
{%- set days = var('days', 30) | int %}

with

history as (

    select * from {{ ref('fct_audience_history') }}
    where computation_class in ('audience', 'journey_step')

),

memberships as (

    select * from {{ ref('dim_audience_memberships') }}

),

changes as (

    select
        computation_key,
        contact_id,
        valid_from,
        is_member,
        lag(is_member) over (
            partition by contact_id, computation_key
            order by valid_from, source_message_id
        ) as was_member
    from history

),

changes_in_period as (

    select * from changes
    where
        valid_from > {{ dbt.dateadd('day', -days, segment_accounts.activity_as_of()) }}
        and valid_from <= {{ segment_accounts.activity_as_of() }}

),

moves as (

    select
        computation_key,
        sum(case when is_member and not coalesce(was_member, false) then 1 else 0 end) as entry_count,
        sum(case when not is_member and was_member then 1 else 0 end) as exit_count
    from changes_in_period
    group by computation_key

),

members_now as (

    select
        computation_key,
        sum(case when is_member then 1 else 0 end) as member_count_now
    from memberships
    group by computation_key

),

final as (

    select
        coalesce(moves.computation_key, members_now.computation_key) as computation_key,
        coalesce(moves.entry_count, 0) as entry_count,
        coalesce(moves.exit_count, 0) as exit_count,
        coalesce(members_now.member_count_now, 0) as member_count_now
    from moves
    full outer join members_now
        on moves.computation_key = members_now.computation_key

)

select * from final
order by computation_key
