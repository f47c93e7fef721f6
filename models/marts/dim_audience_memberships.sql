{#- Current state, contact x audience (and journey step): who is in which audience now, and since when. -#}

with

history as (

    select * from {{ ref('fct_audience_history') }}

),

final as (

    select
        audience_history_id,
        contact_id,
        computation_key,
        computation_class,
        computation_id,
        space_id,
        is_member,
        valid_from as member_state_since
    from history
    where
        is_current
        and computation_class in ('audience', 'journey_step')

)

select * from final
