{#-
    Connected components of an undirected graph: `edges` (a relation or CTE) with two text columns in; one row
    per node of an edge that is not a self-loop out, with `component_id` (the smallest node of its component),
    and `rounds_used`. The idea, in set-based passes whose count never depends on the data size:
      1. hook: every node points at the smallest (random, hash64) label among itself and its neighbours;
      2. pointer jumping: parent := grandparent, `pointer_jumps` times, collapsing the trees that made;
      3. contract: each node becomes its parent, edges inside a group vanish, and the next round works on a
         graph about a third the size (a chain of depth d needs about log3(d) + 1 rounds; cycles need nothing);
      4. compose the per-round parents backwards to give every node its final label.
    `max_rounds` is generous because rounds past convergence cost next to nothing; the data test
    assert_identity_components_converged fails if a component ever needed more.
-#}
{% macro connected_components(edges, node_a, node_b, max_rounds=var('segment_accounts__identity_max_rounds'), pointer_jumps=2) -%}
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
        min(cc_nodes.node) over (partition by cc_labels_1.label) as component_id,
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
