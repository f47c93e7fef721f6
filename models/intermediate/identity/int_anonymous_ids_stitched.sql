{#-
    Rule "anonymous ids": an anonymous id belongs to the user id of the most recent event that carries both
    (occurred_at, then received_at, then messageId). It is an attachment, never an edge: a shared browser
    seen with two user ids goes to the latest and does not merge them. An anonymous id that an alias named as
    its previousId follows the alias instead. One never tied to a user id is a contact of its own.
-#}

with

identifier_calls as (

    -- each key's first and last call, not every event (int_identifier_calls_summarized)
    select * from {{ ref('int_identifier_calls_summarized') }}

),

user_ids as (

    select * from {{ ref('int_user_ids_merged') }}

),

anonymous_ids as (

    select anonymous_id
    from identifier_calls
    where anonymous_id is not null
    group by anonymous_id

),

events_with_both_by_recency as (

    select
        anonymous_id,
        user_id,
        row_number() over (
            partition by anonymous_id
            order by occurred_at desc, received_at desc, message_id desc
        ) as recency_rank
    from identifier_calls
    where
        anonymous_id is not null
        and user_id is not null

),

latest_user_ids as (

    select
        anonymous_id,
        user_id
    from events_with_both_by_recency
    where recency_rank = 1

),

final as (

    select
        anonymous_ids.anonymous_id,
        coalesce(aliased.user_id, latest_user_ids.user_id) as user_id,
        coalesce(aliased.canonical_user_id, attached.canonical_user_id) as canonical_user_id,
        coalesce(aliased.canonical_user_id, attached.canonical_user_id) is null as is_anonymous
    from anonymous_ids
    -- the anonymous id is itself a node of the alias graph (an alias's previousId): the alias decides
    left join user_ids as aliased
        on anonymous_ids.anonymous_id = aliased.user_id
    left join latest_user_ids
        on anonymous_ids.anonymous_id = latest_user_ids.anonymous_id
    left join user_ids as attached
        on latest_user_ids.user_id = attached.user_id

)

select * from final
