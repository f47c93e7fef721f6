{#-
    Publishing (pipelines/publish.py) brings analytics.duckdb's copy of fct_events up to date. Comparing every row
    of both copies grows with history (at 5M events, hashing both copies was most of publishing), though a
    scheduled build rewrites a small batch of rows. So, on DuckDB, where publishing happens, fct_events keeps what
    its last build did, in two build-state tables:
    - fct_events__rewritten: the rows its last incremental build wrote, the very batch delete+insert applied.
      A pre-hook drops it at every build and only the incremental strategy below writes it, so a full build
      leaves none;
    - fct_events__build: the dbt invocation that built fct_events last (built_by) and the one before it
      (built_after), replaced by a post-hook at every build, full or incremental.
    Publishing applies the rows only when built_after is the build its copy was made from; otherwise (a build
    that was not published, a full build) it compares the copies. Everything here is in the model's transaction.
    Other adapters publish nothing: these macros render nothing there, and the strategy is dbt's delete+insert.
    The two tables are sources of build_state for publishing to find, but the model does not read them (so its
    unit tests need no fixtures for them): they sit beside its mapping, named after it.
-#}

{% macro build_state_table(suffix) -%}
    {%- set mapping = source('build_state', model.name ~ '__mapping') -%}
    {{ return(api.Relation.create(database=mapping.database, schema=mapping.schema, identifier=model.name ~ '__' ~ suffix)) }}
{%- endmacro %}

{#- incremental_strategy='recorded_delete_insert': dbt's delete+insert, then the batch is kept -#}
{% macro get_incremental_recorded_delete_insert_sql(arg_dict) -%}
    {%- set record = segment_accounts.record_rewritten_rows(arg_dict['temp_relation']) -%}
    {{ get_incremental_delete_insert_sql(arg_dict) }}
    {%- if record | trim %};
    {{ record }}
    {%- endif %}
{%- endmacro %}

{% macro record_rewritten_rows(batch) -%}
    {{ return(adapter.dispatch('record_rewritten_rows', 'segment_accounts')(batch)) }}
{%- endmacro %}

{% macro default__record_rewritten_rows(batch) -%}
{%- endmacro %}

{% macro duckdb__record_rewritten_rows(batch) -%}
    create table {{ segment_accounts.build_state_table('rewritten') }} as select * from {{ batch }}
{%- endmacro %}

{#- pre-hook: until this build's strategy writes them, there are no rewritten rows to publish -#}
{% macro forget_rewritten_rows() -%}
    {{ return(adapter.dispatch('forget_rewritten_rows', 'segment_accounts')()) }}
{%- endmacro %}

{% macro default__forget_rewritten_rows() -%}
{%- endmacro %}

{% macro duckdb__forget_rewritten_rows() -%}
    drop table if exists {{ segment_accounts.build_state_table('rewritten') }}
{%- endmacro %}

{#- post-hook: this build follows the one recorded before it -#}
{% macro record_build() -%}
    {{ return(adapter.dispatch('record_build', 'segment_accounts')()) }}
{%- endmacro %}

{% macro default__record_build() -%}
{%- endmacro %}

{% macro duckdb__record_build() -%}
    {%- set build = segment_accounts.build_state_table('build') -%}
    {%- set previous = adapter.get_relation(build.database, build.schema, build.identifier) if execute else none -%}
    create or replace table {{ build }} as
    select
        '{{ invocation_id }}' as built_by,
        {% if previous is not none -%}
            (select max(built_by) from {{ build }})
        {%- else -%}
            cast(null as varchar)
        {%- endif %} as built_after
{%- endmacro %}
