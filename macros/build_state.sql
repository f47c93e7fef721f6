{#-
    The per-event incremental models (int_events_identified, fct_events) remember which identifier mapping they
    were built with, so that their next run rewrites only the events whose contact or account changed since
    (snowplow's packages keep such a manifest too). The mapping is a small table, one row per identifier, the
    source build_state; these two statements are the model's post-hooks, so they run inside the model's own
    transaction: the events and the mapping they were built with are committed together, or neither is.
    Replaced whole on every build, full or incremental, so it always exists beside the model and matches it.
    Where the model is a table (Spark without Delta, or var segment_accounts__incremental false) the mapping is
    dropped and not written: should the model become incremental later, its first run finds no mapping and
    rewrites every event, never trusting a mapping older than the table.
-#}
{% macro drop_build_state(state) -%}
    drop table if exists {{ state }}
{%- endmacro %}

{% macro create_build_state(state, mapping_sql) -%}
    {%- if model.config.materialized == 'incremental' -%}
        create table {{ state }} as {{ mapping_sql }}
    {%- endif -%}
{%- endmacro %}

{#-
    on-run-start hook, one per table: the build-state table exists, empty, before anything reads it. dbt's unit
    tests read a source's columns from the warehouse, and a model whose build state is missing (dropped by
    hand) then compares against no mapping at all and rewrites every event it has: slower, never wrong.
-#}
{% macro create_build_state_table(name, columns) -%}
    {%- if execute -%}
        {#- a first build: the hook runs before any model has created the schema -#}
        {%- set state = source('build_state', name) -%}
        {%- do adapter.create_schema(api.Relation.create(database=state.database, schema=state.schema)) -%}
    {%- endif -%}
    {{ return(adapter.dispatch('create_build_state_table', 'segment_accounts')(name, columns)) }}
{%- endmacro %}

{% macro default__create_build_state_table(name, columns) -%}
    create table if not exists {{ source('build_state', name) }} (
        {%- for column in columns %}
        {{ column }} {{ dbt.type_string() }}{{ ',' if not loop.last }}
        {%- endfor %}
    )
{%- endmacro %}
