{#-
    Rule "alias merge chains", the graph part: every alias (previousId -> userId) is an edge, and the ids it
    joins, transitively and whatever the cycles, are one component (macro connected_components). Edges in,
    one row per id that appears in an alias out: (node, component_id, rounds_used).
-#}

with

identifier_calls as (

    -- each key's first and last call, not every event (int_identifier_calls_summarized)
    select * from {{ ref('int_identifier_calls_summarized') }}

),

alias_edges as (

    select
        previous_id,
        user_id
    from identifier_calls
    where
        message_type = 'alias'
        and previous_id is not null
        and user_id is not null

),

components as (

    {{ segment_accounts.connected_components('alias_edges', 'previous_id', 'user_id') }}

)

select * from components
