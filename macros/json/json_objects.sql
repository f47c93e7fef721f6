{#- Casting raw text to the warehouse's JSON type, and taking JSON objects apart and back together. -#}

{% macro parse_json(text) -%}
    {{ return(adapter.dispatch('parse_json', 'segment_accounts')(text)) }}
{%- endmacro %}

{% macro default__parse_json(text) -%}
    parse_json({{ text }})
{%- endmacro %}

{% macro duckdb__parse_json(text) -%}
    cast({{ text }} as json)
{%- endmacro %}

{% macro postgres__parse_json(text) -%}
    {#-
        jsonb cannot hold the character U+0000, and one `\u0000` escape in one payload would fail the whole
        build: such an escape (not an escaped backslash followed by `u0000`) becomes U+FFFD, the replacement
        character, in the parsed copy only (raw_events keeps the exact text).
    -#}
    cast(
        case
            when strpos({{ text }}, '\u0000') > 0
                then regexp_replace({{ text }}, '(?<![\\])((?:[\\]{2})*)[\\]u0000', '\1\\ufffd', 'g')
            else {{ text }}
        end
        as jsonb
    )
{%- endmacro %}

{#-
    A table function for a FROM clause: one row per top-level key of a JSON object, columns `key` and `value`
    (value as JSON). Both warehouses treat a function call in FROM as lateral, so it may read the preceding table.
-#}
{% macro json_each(json) -%}
    {{ return(adapter.dispatch('json_each', 'segment_accounts')(json)) }}
{%- endmacro %}

{% macro default__json_each(json) -%}
    json_each({{ json }})
{%- endmacro %}

{% macro postgres__json_each(json) -%}
    jsonb_each(({{ json }})::jsonb)
{%- endmacro %}

{#- Aggregate key/value rows back into one JSON object. -#}
{% macro json_object_agg(key, value) -%}
    {{ return(adapter.dispatch('json_object_agg', 'segment_accounts')(key, value)) }}
{%- endmacro %}

{% macro default__json_object_agg(key, value) -%}
    json_object_agg({{ key }}, {{ value }})
{%- endmacro %}

{% macro duckdb__json_object_agg(key, value) -%}
    {#- keys sorted, as jsonb does, so equal objects print equally (json_group_object takes no order by) -#}
    to_json(map(list({{ key }} order by {{ key }}), list({{ value }} order by {{ key }})))
{%- endmacro %}

{% macro postgres__json_object_agg(key, value) -%}
    jsonb_object_agg({{ key }}, {{ value }})
{%- endmacro %}

{#- True when the JSON value is an object (traits sent as a string or an array are ignored). -#}
{% macro json_is_object(json) -%}
    {{ return(adapter.dispatch('json_is_object', 'segment_accounts')(json)) }}
{%- endmacro %}

{% macro default__json_is_object(json) -%}
    (json_typeof({{ json }}) = 'object')
{%- endmacro %}

{% macro duckdb__json_is_object(json) -%}
    (json_type({{ json }}) = 'OBJECT')
{%- endmacro %}

{% macro postgres__json_is_object(json) -%}
    (jsonb_typeof(({{ json }})::jsonb) = 'object')
{%- endmacro %}

{#- A null of the type json_each's values have (Postgres cannot union an untyped null with jsonb). -#}
{% macro json_null() -%}
    {{ return(adapter.dispatch('json_null', 'segment_accounts')()) }}
{%- endmacro %}

{% macro default__json_null() -%}
    {{ segment_accounts.parse_json('cast(null as ' ~ dbt.type_string() ~ ')') }}
{%- endmacro %}
