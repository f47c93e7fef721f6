{#-
    Apache Spark (dbt-spark; tested in local mode with the `session` method, Spark 4.x) versions of every
    dispatched macro of this project. Only the SQL dialect lives here: the rules stay in the models.

    Conventions on Spark:
    - JSON stays text (`string`): the raw payload is the exact text received, and every "JSON" column
      (properties, traits, context, dim_contacts.traits...) is JSON text. It is read with get_json_object, which
      returns scalars as their text (a string without its quotes) and objects and arrays as compact JSON text.
      Where a JSON value must keep its type (json_each, json_value_at_key) the text is parsed into a VARIANT
      and printed back with to_json.
    - Every `*_at` column is a Spark `timestamp` (an instant). The profile sets the session time zone to UTC so
      that they also print as UTC; the parsing below never depends on the session time zone.
    - Spark 4 runs with ANSI mode on, where a bad cast is an error: every parse is a try_ variant, so a value
      that does not parse is null and the occurred_at rule falls through to its next source.
-#}

{#- JSON stays text on Spark (see above): nothing to parse. -#}
{% macro spark__parse_json(text) -%}
    {{ text }}
{%- endmacro %}

{#- `$.key.key`; a key that is not a plain name goes in brackets (`$['a.b']`), quotes escaped for the literal. -#}
{% macro spark_json_path(path) -%}
    ${% for key in path -%}
        {%- if modules.re.fullmatch('[A-Za-z_][A-Za-z0-9_]*', key) -%}.{{ key }}
        {%- else -%}[\'{{ key | replace("'", "") | replace("\\", "") }}\']
        {%- endif -%}
    {%- endfor %}
{%- endmacro %}

{% macro spark__json_text(json, path) -%}
    get_json_object({{ json }}, '{{ segment_accounts.spark_json_path(path) }}')
{%- endmacro %}

{% macro spark__json_value(json, path) -%}
    get_json_object({{ json }}, '{{ segment_accounts.spark_json_path(path) }}')
{%- endmacro %}

{#- Paths that are data: get_json_object takes a path computed per row. The accepted path syntax (see
    json_dynamic_paths.sql) has no character that needs escaping. -#}
{% macro spark__json_text_at_dotted_path(json, path_expr) -%}
    get_json_object({{ json }}, concat('$.', {{ path_expr }}))
{%- endmacro %}

{% macro spark__json_text_at_key(json, key_expr) -%}
    get_json_object({{ json }}, concat('$[\'', {{ key_expr }}, '\']'))
{%- endmacro %}

{% macro spark__json_value_at_key(json, key_expr) -%}
    {#- JSON text that keeps the value's type: strings come back quoted, as on the other warehouses. -#}
    to_json(from_json({{ json }}, 'map<string, variant>')[{{ key_expr }}])
{%- endmacro %}

{#-
    One row per top-level key, for `cross join {{ json_each(...) }} as alias`: a lateral generator over the
    object parsed as a map, columns `key` and `value` (value as a VARIANT; json_object_agg prints it).
-#}
{#- json_each's values are VARIANTs here, where other JSON is text. -#}
{% macro spark__json_null() -%}
    cast(null as variant)
{%- endmacro %}

{% macro spark__json_each(json) -%}
    lateral explode(from_json({{ json }}, 'map<string, variant>'))
{%- endmacro %}

{#-
    Rows of (key, value) back into one JSON object, keys sorted so equal objects print equally. Built as text:
    each key is quoted by to_json (which escapes it), each value is printed by to_json from its VARIANT.
-#}
{% macro spark__json_object_agg(key, value) -%}
    concat(
        '{',
        array_join(
            transform(
                array_sort(collect_list(struct({{ key }} as k, to_json({{ value }}) as v))),
                entry -> concat(substr(to_json(array(entry.k)), 2, length(to_json(array(entry.k))) - 2), ':', entry.v)
            ),
            ','
        ),
        '}'
    )
{%- endmacro %}

{#- json_object_keys is null for anything but a JSON object (a scalar, an array, invalid text). -#}
{% macro spark__json_is_object(json) -%}
    (json_object_keys({{ json }}) is not null)
{%- endmacro %}

{#- rlike finds a match anywhere: anchored here so it matches the whole text, as on the other warehouses. -#}
{% macro spark__regexp_like(expr, pattern) -%}
    ({{ expr }} rlike concat('^(?:', {{ pattern }}, ')$'))
{%- endmacro %}

{% macro spark__hash64(expr) -%}
    xxhash64({{ expr }})
{%- endmacro %}

{#- The loader's received_at is a Parquet UTC timestamp: already an instant. -#}
{% macro spark__to_utc_timestamp(expr) -%}
    cast({{ expr }} as timestamp)
{%- endmacro %}

{#-
    ISO-8601 text (already shape-checked by iso8601_to_utc's patterns) in the one form Spark's cast reads
    whatever the variant: upper case (`t`, `z`), no space before the offset, seconds present (`10:00` ->
    `10:00:00`), at most six fractional digits (Spark's precision; DuckDB truncates the same way).
-#}
{% macro spark_iso8601_normalized(text) -%}
    regexp_replace(
        regexp_replace(
            regexp_replace(upper({{ text }}), ' ([Z+-])', '$1'),
            '^([0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2})([^:0-9]|$)', '$1:00$2'
        ),
        '([.][0-9]{6})[0-9]+', '$1'
    )
{%- endmacro %}

{#- With an offset: Spark's cast reads `Z`, `+hh:mm`, `+hhmm` and `+hh`, independently of the session zone. -#}
{% macro spark__iso8601_with_offset_to_utc(text) -%}
    try_cast({{ segment_accounts.spark_iso8601_normalized(text) }} as timestamp)
{%- endmacro %}

{#- Without an offset the text is UTC: `Z` is written in, so the session time zone never applies. -#}
{% macro spark__iso8601_without_offset_to_utc(text) -%}
    try_cast(
        case
            when length({{ text }}) = 10 then concat({{ text }}, 'T00:00:00Z')
            else concat({{ segment_accounts.spark_iso8601_normalized(text) }}, 'Z')
        end
        as timestamp
    )
{%- endmacro %}

{#- In microseconds, the unit of Spark's timestamps: no interval types, no rounding. -#}
{% macro spark__subtract_clock_skew(received_at, sent_at, original_timestamp) -%}
    timestamp_micros(
        unix_micros({{ received_at }}) - (unix_micros({{ sent_at }}) - unix_micros({{ original_timestamp }}))
    )
{%- endmacro %}

{#-
    dbt's own listagg on Spark ignores `order by` (it warns and concatenates in whatever order the rows came),
    which would make dim_account_rollups.top_events_30d and the Engage source fingerprints depend on the plan.
    This override sorts: `order by a, b` (ascending keys only; with `desc` the order is left as Spark gives it,
    as in dbt-spark's version) becomes array_sort over structs of the keys and the measure. Found before dbt-spark's macro
    because dispatch searches the root project first.
-#}
{% macro spark__listagg(measure, delimiter_text, order_by_clause, limit_num) -%}
    {%- set keys = [] -%}
    {%- set ns = namespace(sortable=true) -%}
    {%- set clause = (order_by_clause or '') | trim -%}
    {%- if clause.lower().startswith('order by ') -%}
        {%- for key in clause[9:].split(',') -%}
            {%- set words = key.split() -%}
            {%- if words and words[-1].lower() == 'asc' -%}{%- set words = words[:-1] -%}{%- endif -%}
            {%- if not words or 'desc' in (words | map('lower') | list) or 'nulls' in (words | map('lower') | list) -%}
                {%- set ns.sortable = false -%}
            {%- endif -%}
            {%- do keys.append(words | join(' ')) -%}
        {%- endfor -%}
    {%- endif -%}
    {%- if not keys or not ns.sortable -%}
        {#- unordered, as dbt-spark's own version is (whose namespace an analysis cannot reach) -#}
        {%- set unordered = 'collect_list(' ~ measure ~ ')' -%}
        {%- if limit_num -%}{%- set unordered = 'slice(' ~ unordered ~ ', 1, ' ~ limit_num ~ ')' -%}{%- endif -%}
        {{ return('array_join(' ~ unordered ~ ', ' ~ delimiter_text ~ ')') }}
    {%- endif -%}
    {%- set sorted -%}
        transform(
            array_sort(collect_list(struct(
                {%- for key in keys %}{{ key }} as k{{ loop.index }}, {% endfor %}{{ measure }} as measure
            ))),
            entry -> entry.measure
        )
    {%- endset -%}
    {%- if limit_num -%}
        {{ return('array_join(slice(' ~ sorted ~ ', 1, ' ~ limit_num ~ '), ' ~ delimiter_text ~ ')') }}
    {%- else -%}
        {{ return('array_join(' ~ sorted ~ ', ' ~ delimiter_text ~ ')') }}
    {%- endif -%}
{%- endmacro %}

{#-
    Connected components for Spark. The default version references each round's CTEs twice (hooking and
    pointer jumping join a round with itself); Spark inlines every deterministic CTE, so its plan doubles with
    each reference and the analyzer runs out of memory past two rounds. Here each round reads the previous one
    exactly once, so the plan grows linearly: min-label propagation over the adjacency list (with self-loops),
    one hop per round. A component is resolved after as many rounds as its diameter (an alias chain of d
    aliases needs d rounds), not the logarithmic count of the default: var
    `segment_accounts__identity_max_rounds` bounds the chain length on Spark, and the data test assert_identity_components_converged fails loudly if it is too small.
    Same output: `node`, `component_id` (the smallest node of the component), `rounds_used` (the last
    round in which the node's label changed).
-#}
{% macro spark__connected_components(edges, node_a, node_b, max_rounds, pointer_jumps) -%}
with

cc_nodes as (

    select distinct
        node,
        {{ segment_accounts.hash64('node') }} as label
    from (
        -- as in the default version, a node whose only edge is a self-loop joins nothing and is left out
        select {{ node_a }} as node from {{ edges }} where {{ node_a }} <> {{ node_b }}
        union all
        select {{ node_b }} as node from {{ edges }} where {{ node_a }} <> {{ node_b }}
    ) as both_ends

),

cc_adjacency as (

    -- every neighbour of a node, and the node itself
    select distinct
        node,
        neighbour
    from (
        select
            {{ segment_accounts.hash64(node_a) }} as node,
            {{ segment_accounts.hash64(node_b) }} as neighbour
        from {{ edges }}
        union all
        select
            {{ segment_accounts.hash64(node_b) }} as node,
            {{ segment_accounts.hash64(node_a) }} as neighbour
        from {{ edges }}
        union all
        select
            label as node,
            label as neighbour
        from cc_nodes
    ) as adjacent

),

cc_labels_0 as (

    select
        label as node,
        label,
        0 as rounds_used
    from cc_nodes

),
{% for round in range(1, max_rounds + 1) %}

cc_labels_{{ round }} as (

    -- a node takes the smallest label among itself and its neighbours
    select
        adjacency.node,
        min(previous.label) as label,
        case
            when min(previous.label) < max(case when adjacency.node = adjacency.neighbour then previous.label end)
                then {{ round }}
            else max(case when adjacency.node = adjacency.neighbour then previous.rounds_used end)
        end as rounds_used
    from cc_adjacency as adjacency
    inner join cc_labels_{{ round - 1 }} as previous
        on adjacency.neighbour = previous.node
    group by adjacency.node

),
{% endfor %}

cc_final as (

    select
        cc_nodes.node,
        min(cc_nodes.node) over (partition by cc_labels_{{ max_rounds }}.label) as component_id,
        cc_labels_{{ max_rounds }}.rounds_used
    from cc_nodes
    inner join cc_labels_{{ max_rounds }}
        on cc_nodes.label = cc_labels_{{ max_rounds }}.node

)

select * from cc_final
{%- endmacro %}

{#- fct_audience_history is a full-rebuild table on Spark (see dbt_project.yml): nothing to delete afterwards. -#}
{% macro spark__delete_vanished_pairs(history, pairs) -%}
    select 1
{%- endmacro %}

{#-
    Rule "identifiers", part zero (see segment_identifier.sql). get_json_object cannot tell `true` from `"true"`,
    so the keys are read again as VARIANTs printed by to_json, which keeps the type (strings quoted) and
    prints decimals canonically already (`42.0` -> `42`); doubles (`4.2e1` -> `42.0`, `1e20` -> `1.0E20`) go
    through the same canonicalisation as on DuckDB.
-#}
{% macro spark__segment_identifier(json, camel_key, snake_key, camel_value, snake_value) -%}
    {%- set keys = "from_json(" ~ json ~ ", 'map<string, variant>')" -%}
    {%- set camel = "to_json(" ~ keys ~ "['" ~ camel_key ~ "'])" -%}
    {%- set snake = "to_json(" ~ keys ~ "['" ~ snake_key ~ "'])" -%}
    {%- set value = "coalesce(nullif(" ~ camel ~ ", 'null'), " ~ snake ~ ")" -%}
    {%- set number = "try_cast(" ~ value ~ " as double)" -%}
    case
        when {{ value }} like '"%' then get_json_object(concat('[', {{ value }}, ']'), '$[0]')
        when not {{ value }} rlike '^-?[0-9]' then null
        when {{ value }} rlike '^-?0+([.]0+)?$' then '0'
        when {{ value }} rlike '^-?[0-9]+$' then {{ value }}
        when {{ value }} rlike '^-?[0-9]+[.][0-9]+$' then regexp_replace({{ value }}, '[.]?0+$', '')
        when abs({{ number }}) < 1e38 and {{ number }} % 1 = 0
            then cast(cast({{ number }} as decimal(38, 0)) as string)
        else cast({{ number }} as string)
    end
{%- endmacro %}

{#-
    Spark without Delta builds no model incrementally, but dbt's unit tests read the build state's columns
    (macros/build_state.sql): a Parquet table, as the session has no Hive support for a plain CREATE TABLE.
-#}
{% macro spark__create_build_state_table(name, columns) -%}
    create table if not exists {{ source('build_state', name) }} (
        {%- for column in columns %}
        {{ column }} string{{ ',' if not loop.last }}
        {%- endfor %}
    ) using parquet
{%- endmacro %}
