{#-
    Rule "alias merge chains": every alias (previousId -> userId) joins both ids into one contact, transitively
    and whatever the cycles (the components of int_user_id_components). The canonical user id is the
    userId of the component's most recent alias (occurred_at, then received_at, then messageId); a user id
    without aliases is its own canonical id. A previousId with no events of its own is a node all the same.
-#}

with

identifier_calls as (

    -- each key's first and last call, not every event (int_identifier_calls_summarized)
    select * from {{ ref('int_identifier_calls_summarized') }}

),

components as (

    select * from {{ ref('int_user_id_components') }}

),

alias_edges as (

    select
        previous_id,
        user_id,
        occurred_at,
        received_at,
        message_id
    from identifier_calls
    where
        message_type = 'alias'
        and previous_id is not null
        and user_id is not null

),

user_id_nodes as (

    -- every userId, and the previousIds that never sent an event as a userId (they still belong to the
    -- contact): one grouping, no lookup of each previousId among a million events. The previousIds come from
    -- the components (every id of an alias but a self-loop's, which is its own userId): the small table, not a
    -- second pass over the events
    select
        user_id,
        max(is_seen) = 1 as is_seen_as_user_id
    from (
        select
            user_id,
            1 as is_seen
        from identifier_calls
        where user_id is not null

        union all

        select
            node as user_id,
            0 as is_seen
        from components
    ) as user_id_mentions
    group by user_id

),

aliases_by_recency as (

    select
        components.component_id,
        alias_edges.user_id,
        row_number() over (
            partition by components.component_id
            order by alias_edges.occurred_at desc, alias_edges.received_at desc, alias_edges.message_id desc
        ) as recency_rank
    from alias_edges
    inner join components
        on alias_edges.user_id = components.node

),

canonical_user_ids as (

    select
        component_id,
        user_id as canonical_user_id
    from aliases_by_recency
    where recency_rank = 1

),

final as (

    select
        user_id_nodes.user_id,
        user_id_nodes.is_seen_as_user_id,
        components.rounds_used as alias_rounds_used,
        coalesce(canonical_user_ids.canonical_user_id, user_id_nodes.user_id) as canonical_user_id,
        components.component_id is not null as is_aliased
    from user_id_nodes
    left join components
        on user_id_nodes.user_id = components.node
    left join canonical_user_ids
        on components.component_id = canonical_user_ids.component_id

)

select * from final
