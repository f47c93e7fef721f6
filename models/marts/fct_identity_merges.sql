{#-
    Identity merges, one row per pair of ids that a call tied into one contact: an alias (previousId joins the
    userId's contact), or any call carrying both an anonymous id and a user id (the anonymous id joins that
    user's contact). The first such call of the pair says when and through which message. A pair whose ids
    ended in different contacts (a shared browser's earlier user) merged nothing and is left out.
-#}

with

identifier_calls as (

    -- each key's first and last call, not every event (int_identifier_calls_summarized)
    select * from {{ ref('int_identifier_calls_summarized') }}

),

contact_identifiers as (

    select * from {{ ref('int_contact_identifiers_resolved') }}

),

connections as (

    select * from {{ ref('stg_segment__connections') }}

),

tying_calls as (

    select
        previous_id as identifier,
        user_id as merged_into_user_id,
        event_id,
        connection_id,
        message_id,
        message_type,
        occurred_at,
        received_at
    from identifier_calls
    where
        message_type = 'alias'
        and previous_id is not null
        and user_id is not null
        and previous_id != user_id

    union all

    select
        anonymous_id as identifier,
        user_id as merged_into_user_id,
        event_id,
        connection_id,
        message_id,
        message_type,
        occurred_at,
        received_at
    from identifier_calls
    where
        anonymous_id is not null
        and user_id is not null
        and anonymous_id != user_id

),

first_tied_at as (

    -- most events carry both ids, so there are millions of tying calls and few pairs: an aggregate first, and
    -- the window below only over each pair's calls at its earliest time (occurred_at is never null)
    select
        identifier,
        merged_into_user_id,
        min(occurred_at) as first_occurred_at
    from tying_calls
    group by identifier, merged_into_user_id

),

tying_calls_in_order as (

    select
        tying_calls.*,
        row_number() over (
            partition by tying_calls.identifier, tying_calls.merged_into_user_id
            order by tying_calls.received_at, tying_calls.message_id
        ) as call_number
    from tying_calls
    inner join first_tied_at
        on
            tying_calls.identifier = first_tied_at.identifier
            and tying_calls.merged_into_user_id = first_tied_at.merged_into_user_id
            and tying_calls.occurred_at = first_tied_at.first_occurred_at

),

identity_merges as (

    select
        first_calls.*,
        into_ids.contact_id
    from tying_calls_in_order as first_calls
    inner join contact_identifiers as into_ids
        on
            first_calls.merged_into_user_id = into_ids.identifier
            and into_ids.identifier_type = 'user_id'
    where
        first_calls.call_number = 1
        and exists (
            select 1 from contact_identifiers as joined_ids
            where
                joined_ids.identifier = first_calls.identifier
                and joined_ids.contact_id = into_ids.contact_id
        )

),

final as (

    select
        {{ dbt.hash(dbt.concat(['identity_merges.identifier', "'|'", 'identity_merges.merged_into_user_id'])) }}
            as identity_merge_id,
        identity_merges.contact_id,
        identity_merges.identifier,
        -- as dim_contact_identifiers lists it: a previousId never seen as a user id is an anonymous id
        case when joined_user_ids.identifier is not null then 'user_id' else 'anonymous_id' end as identifier_type,
        identity_merges.merged_into_user_id,
        identity_merges.message_type as merged_by_call,
        identity_merges.occurred_at as merged_at,
        identity_merges.received_at as merged_received_at,
        identity_merges.message_id as merge_message_id,
        identity_merges.event_id as merge_event_id,
        connections.connection_name
    from identity_merges
    left join contact_identifiers as joined_user_ids
        on
            identity_merges.identifier = joined_user_ids.identifier
            and joined_user_ids.identifier_type = 'user_id'
    left join connections
        on identity_merges.connection_id = connections.connection_id

)

select * from final
