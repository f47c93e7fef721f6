{#-
    Trait paths chosen per connection (`company.id`) are data: they arrive as a column value and are used as a
    value, never pasted into SQL text. The registry only accepts `^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){0,7}$`;
    anything else stored by hand is ignored here (null) rather than failing the build.
-#}

{#- Text at a nested path given as a dotted string: `company.id` reads {"company": {"id": ...}}. -#}
{% macro json_text_at_dotted_path(json, path_expr) -%}
    case
        when {{ segment_accounts.regexp_like(path_expr, segment_accounts.trait_path_pattern()) }}
            then {{ adapter.dispatch('json_text_at_dotted_path', 'segment_accounts')(json, path_expr) }}
    end
{%- endmacro %}

{% macro default__json_text_at_dotted_path(json, path_expr) -%}
    json_extract_path_text({{ json }}, {{ path_expr }})
{%- endmacro %}

{% macro duckdb__json_text_at_dotted_path(json, path_expr) -%}
    {#- A JSON Pointer: `/company/id`. The accepted path syntax has no `~` or `/` to escape. -#}
    json_extract_string({{ json }}, '/' || replace({{ path_expr }}, '.', '/'))
{%- endmacro %}

{% macro postgres__json_text_at_dotted_path(json, path_expr) -%}
    (({{ json }})::jsonb #>> string_to_array({{ path_expr }}, '.'))
{%- endmacro %}


{#- Text at a top-level key given as a value: `company.id` reads {"company.id": ...}. -#}
{% macro json_text_at_key(json, key_expr) -%}
    case
        when {{ segment_accounts.regexp_like(key_expr, segment_accounts.trait_path_pattern()) }}
            then {{ adapter.dispatch('json_text_at_key', 'segment_accounts')(json, key_expr) }}
    end
{%- endmacro %}

{% macro default__json_text_at_key(json, key_expr) -%}
    json_extract_path_text({{ json }}, {{ key_expr }})
{%- endmacro %}

{% macro duckdb__json_text_at_key(json, key_expr) -%}
    {#- A one-token JSON Pointer: dots are ordinary characters in a pointer token. -#}
    json_extract_string({{ json }}, '/' || {{ key_expr }})
{%- endmacro %}

{% macro postgres__json_text_at_key(json, key_expr) -%}
    (({{ json }})::jsonb ->> {{ key_expr }})
{%- endmacro %}


{% macro trait_path_pattern() -%}
    '^[A-Za-z_][A-Za-z0-9_]*([.][A-Za-z_][A-Za-z0-9_]*){0,7}$'
{%- endmacro %}
