{#-
    The `not materialized` hint after `as` in a CTE where the warehouse has one (DuckDB, Postgres). Both
    materialize a CTE that is read more than once; when each reader keeps only a few of its rows (a join on the
    events of the new loads), copying the whole relation first costs more than reading it twice.
-#}
{% macro inlined_cte() -%}
    {{ return(adapter.dispatch('inlined_cte', 'segment_accounts')()) }}
{%- endmacro %}

{% macro default__inlined_cte() -%}{%- endmacro %}

{% macro duckdb__inlined_cte() -%}
    not materialized
{%- endmacro %}

{% macro postgres__inlined_cte() -%}
    not materialized
{%- endmacro %}
