{#-
    dbt's is_incremental(), with one change: a model not materialized incremental (every model when the var
    segment_accounts_incremental is false, or on Spark) answers false without asking the warehouse whether
    its table exists. So every model compiles for Snowflake and BigQuery with no connection
    (tests/test_cloud_adapters.py), and a full build makes no introspection query for these models.
-#}
{% macro is_incremental() -%}
    {%- if model.config.materialized != 'incremental' -%}
        {{ return(false) }}
    {%- endif -%}
    {{ return(dbt.is_incremental()) }}
{%- endmacro %}
