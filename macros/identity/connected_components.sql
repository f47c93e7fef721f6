{#-
    Connected components of an undirected graph, set-based, in a fixed number of passes.

    `edges` names a relation (or CTE) with two text columns; the result has one row per node that appears in
    an edge: `node`, `component_key` (the same for every node of a component, an opaque integer) and
    `rounds_used` (how many rounds the node's component needed).

    Each round works on a smaller graph than the last (random-mate contraction, as in Boruvka):
      1. hook: every node points at the smallest label among itself and its neighbours;
      2. pointer jumping: `pointer_jumps` times, parent := parent of parent, so trees of height up to
         2^pointer_jumps collapse onto their roots (label doubling, not one hop per pass);
      3. contract: each node is replaced by its pointer; edges inside a group disappear, the rest are kept once.
    Labels are random (hash64), so a round keeps about a third of the nodes of a chain (its local minima) and
    a chain of depth d is done in about log3(d) + 1 rounds. Cycles need nothing special: hooking takes minima
    and contraction drops self-loops, so a cycle collapses like a chain. Rounds after the graph is empty cost
    almost nothing, which is why `max_rounds` can be generous: the work falls geometrically, the count of
    passes never depends on the data size, and the test `assert_identity_components_converged` fails loudly if
    a component ever needed more rounds than this.
    Finally the per-round maps are composed backwards to give every original node its final label.
-#}
{% macro connected_components(edges, node_a, node_b, max_rounds=var('identity_max_rounds'), pointer_jumps=2) -%}
    {{ return(adapter.dispatch('connected_components', 'segment_accounts')(edges, node_a, node_b, max_rounds, pointer_jumps)) }}
{%- endmacro %}

{#- Spark has its own version (macros/adapters/spark.sql): it inlines CTEs, and this one references each round twice. -#}
{% macro default__connected_components(edges, node_a, node_b, max_rounds, pointer_jumps) -%}
with

cc_nodes as (

    select distinct
        node,
        {{ segment_accounts.hash64('node') }} as label
    from (
        select {{ node_a }} as node from {{ edges }}
        union all
        select {{ node_b }} as node from {{ edges }}
    ) as both_ends

),

cc_edges_0 as (

    select distinct
        {{ segment_accounts.hash64(node_a) }} as node_a,
        {{ segment_accounts.hash64(node_b) }} as node_b
    from {{ edges }}
    where {{ node_a }} <> {{ node_b }}

),
{% for round in range(1, max_rounds + 1) %}

cc_hooks_{{ round }}_0 as (

    -- hook: the smallest label among the node and its neighbours
    select
        node_a as node,
        least(node_a, min(node_b)) as parent
    from (
        select node_a, node_b from cc_edges_{{ round - 1 }}
        union all
        select node_b, node_a from cc_edges_{{ round - 1 }}
    ) as both_directions
    group by node_a

),
{% for jump in range(1, pointer_jumps + 1) %}

cc_hooks_{{ round }}_{{ jump }} as (

    -- pointer jumping: parent := grandparent
    select
        child.node,
        grandparent.parent
    from cc_hooks_{{ round }}_{{ jump - 1 }} as child
    inner join cc_hooks_{{ round }}_{{ jump - 1 }} as grandparent
        on child.parent = grandparent.node

),
{% endfor %}

cc_edges_{{ round }}_half as {{ segment_accounts.materialized_cte() }} (

    -- contract, one end of each edge at a time: with two-table joins only, no planner can pick a cross
    -- product on a bad row estimate (a three-way join here did exactly that on DuckDB)
    select
        from_group.parent as node_a,
        contracted_edges.node_b
    from cc_edges_{{ round - 1 }} as contracted_edges
    inner join cc_hooks_{{ round }}_{{ pointer_jumps }} as from_group
        on contracted_edges.node_a = from_group.node

),

cc_edges_{{ round }} as (

    select distinct
        half_contracted.node_a,
        to_group.parent as node_b
    from cc_edges_{{ round }}_half as half_contracted
    inner join cc_hooks_{{ round }}_{{ pointer_jumps }} as to_group
        on half_contracted.node_b = to_group.node
    where half_contracted.node_a <> to_group.parent

),
{% endfor %}

cc_labels_{{ max_rounds }} as (

    select
        node,
        parent as label,
        {{ max_rounds }} as rounds_used
    from cc_hooks_{{ max_rounds }}_{{ pointer_jumps }}

),
{% for round in range(max_rounds - 1, 0, -1) %}

cc_labels_{{ round }} as (

    -- compose: a node's final label is the final label of the group it was contracted into
    select
        hooks.node,
        coalesce(later.label, hooks.parent) as label,
        coalesce(later.rounds_used, {{ round }}) as rounds_used
    from cc_hooks_{{ round }}_{{ pointer_jumps }} as hooks
    left join cc_labels_{{ round + 1 }} as later
        on hooks.parent = later.node

),
{% endfor %}

cc_final as (

    select
        cc_nodes.node,
        cc_labels_1.label as component_key,
        cc_labels_1.rounds_used
    from cc_nodes
    inner join cc_labels_1
        on cc_nodes.label = cc_labels_1.node

)

select * from cc_final
{%- endmacro %}


{#- `materialized` keeps a CTE a separate step that the optimizer cannot merge into the next join. -#}
{% macro materialized_cte() -%}
    {{ return(adapter.dispatch('materialized_cte', 'segment_accounts')()) }}
{%- endmacro %}

{% macro default__materialized_cte() -%}{%- endmacro %}

{% macro duckdb__materialized_cte() -%}
    materialized
{%- endmacro %}

{% macro postgres__materialized_cte() -%}
    materialized
{%- endmacro %}
