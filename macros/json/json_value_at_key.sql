{#-
    The JSON value (as JSON text, any type) at a top-level key given as a value: Engage puts a computed trait's
    value at `traits[computation_key]`, and the key comes from the data, so it is used as a value, never pasted
    into SQL. Guarded by the same pattern as trait paths (Engage keys are snake_case names).
-#}
{% macro json_value_at_key(json, key_expr) -%}
    case
        when {{ segment_accounts.regexp_like(key_expr, segment_accounts.trait_path_pattern()) }}
            then {{ adapter.dispatch('json_value_at_key', 'segment_accounts')(json, key_expr) }}
    end
{%- endmacro %}

{% macro default__json_value_at_key(json, key_expr) -%}
    cast(json_extract_path({{ json }}, {{ key_expr }}) as {{ dbt.type_string() }})
{%- endmacro %}

{% macro duckdb__json_value_at_key(json, key_expr) -%}
    cast(json_extract({{ json }}, '/' || {{ key_expr }}) as varchar)
{%- endmacro %}

{% macro postgres__json_value_at_key(json, key_expr) -%}
    ((({{ json }})::jsonb -> {{ key_expr }})::text)
{%- endmacro %}
