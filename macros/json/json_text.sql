{#-
    JSON access. Every model reads JSON through these macros so that each warehouse gets its own syntax.
    `path` is a list of literal keys known when the model is written (e.g. ['context', 'groupId']);
    paths that are data (a connection's trait path) go through json_text_at_dotted_path / json_text_at_key.
-#}

{#- Text at a static path; null when absent. Objects and arrays come back as their JSON text. -#}
{% macro json_text(json, path) -%}
    {{ return(adapter.dispatch('json_text', 'segment_accounts')(json, path)) }}
{%- endmacro %}

{% macro default__json_text(json, path) -%}
    json_extract_path_text({{ json }}, {% for key in path %}'{{ key }}'{{ ", " if not loop.last }}{% endfor %})
{%- endmacro %}

{% macro duckdb__json_text(json, path) -%}
    json_extract_string({{ json }}, '{{ segment_accounts.duckdb_json_path(path) }}')
{%- endmacro %}

{% macro postgres__json_text(json, path) -%}
    (({{ json }})::jsonb #>> '{{ "{" ~ path | join(",") ~ "}" }}')
{%- endmacro %}


{#- The JSON value (object, array or scalar) at a static path, as the warehouse's JSON type. -#}
{% macro json_value(json, path) -%}
    {{ return(adapter.dispatch('json_value', 'segment_accounts')(json, path)) }}
{%- endmacro %}

{% macro default__json_value(json, path) -%}
    json_extract_path({{ json }}, {% for key in path %}'{{ key }}'{{ ", " if not loop.last }}{% endfor %})
{%- endmacro %}

{% macro duckdb__json_value(json, path) -%}
    json_extract({{ json }}, '{{ segment_accounts.duckdb_json_path(path) }}')
{%- endmacro %}

{% macro postgres__json_value(json, path) -%}
    (({{ json }})::jsonb #> '{{ "{" ~ path | join(",") ~ "}" }}')
{%- endmacro %}


{#- DuckDB JSONPath with every key quoted, so keys may hold any character but a double quote. -#}
{% macro duckdb_json_path(path) -%}
    ${% for key in path %}."{{ key }}"{% endfor %}
{%- endmacro %}
