{#-
    In an incremental model's incremental branch: stop, in dbt's own words for a schema change, when the table
    built by an earlier version lacks a column this version reads from it. Without this, the run would fail on
    a missing column inside the model's SQL, before dbt's on_schema_change check could name the model, and the
    operator would not get the one line saying to rebuild with --full-refresh (pipelines/transform.py).
-#}
{% macro require_built_columns(columns) -%}
    {#- in a unit test `this` is the name of its fixture, not a relation: nothing built to check -#}
    {%- if execute and this is not string -%}
        {%- set built = load_relation(this) -%}
        {%- if built is not none -%}
            {%- set have = adapter.get_columns_in_relation(built) | map(attribute='name') | map('lower') | list -%}
            {%- for column in columns if column | lower not in have -%}
                {{ exceptions.raise_compiler_error(
                    "The source and target schemas on this incremental model are out of sync: " ~ this
                    ~ " has no column " ~ column ~ ". Rebuild it with --full-refresh."
                ) }}
            {%- endfor -%}
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}
