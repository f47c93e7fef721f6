{#-
    on-run-start hook: make the loader's raw tables visible to dbt as the `segment` source.

    Warehouses that dlt loads directly (DuckDB, Postgres, Snowflake, BigQuery) already have them: nothing to do.
    On Spark the loader writes Parquet files to `$SEGMENT_ACCOUNTS_DATA/lake/<raw schema>/<table>/` (dlt's
    filesystem destination, see pipelines/loader.py) and the metastore has to be told where they are. The
    tables are dropped and re-created on every run: they are external (dropping one never deletes a file), so
    this only re-reads the schema and the location, which keeps a metastore that outlived its data folder from
    pointing at stale files.
-#}
{% macro register_raw_tables() -%}
    {{ return(adapter.dispatch('register_raw_tables', 'segment_accounts')()) }}
{%- endmacro %}

{% macro default__register_raw_tables() -%}
    {{ return('') }}
{%- endmacro %}

{% macro spark__register_raw_tables() -%}
    {%- if execute -%}
        {%- set schema = env_var('SEGMENT_ACCOUNTS_RAW_SCHEMA', var('segment_accounts__raw_schema')) -%}
        {%- set lake = (env_var('SEGMENT_ACCOUNTS_DATA', 'data') ~ '/lake/' ~ schema) | replace("'", "\\'") -%}
        {%- do run_query('create database if not exists ' ~ schema) -%}
        {%- for table in ['raw_events', 'rejected_events', 'connections'] -%}
            {%- do run_query('drop table if exists ' ~ schema ~ '.' ~ table) -%}
            {%- do run_query(
                'create table ' ~ schema ~ '.' ~ table
                ~ " using parquet location '" ~ lake ~ '/' ~ table ~ "'"
            ) -%}
        {%- endfor -%}
    {%- endif -%}
    {{ return('') }}
{%- endmacro %}
