{#-
    Many texts (json_texts) or JSON values (json_values) at static paths of one JSON document, for the one
    model that reads every event (stg_segment__events): the document is parsed once per kind, not once per field.

    In a CTE that selects the parsed document (`parse_json(payload) as payload`, from a CTE declared with
    `parsed_json_cte()`), add the column `json_texts('payload', paths) as payload_texts`; then, in the next CTE,
    `json_texts_item('payload_texts', 'payload', paths, ['context', 'groupId'])` is the text at that path (as
    json_text gives it). `paths` is the same list of paths (lists of keys) in both calls.

    DuckDB keeps JSON as text and re-parses it in every json_extract_string call: there the texts are one
    multi-path json_extract_string (one parse, a list of texts) and the item is a list element. Elsewhere the
    parsed document is the warehouse's own type (Postgres: jsonb, parsed once by the cast), so the item is an
    ordinary json_text on it and json_texts is only a placeholder column.
    json_values and json_values_item are the same for JSON values (json_value), e.g. `properties`.
-#}

{% macro json_texts(json, paths) -%}
    {{ return(adapter.dispatch('json_texts', 'segment_accounts')(json, paths)) }}
{%- endmacro %}

{% macro default__json_texts(json, paths) -%}
    cast(null as {{ dbt.type_string() }})
{%- endmacro %}

{% macro duckdb__json_texts(json, paths) -%}
    json_extract_string(
        {{ json }},
        [{% for path in paths %}'{{ segment_accounts.duckdb_json_path(path) }}'{{ ", " if not loop.last }}{% endfor %}]
    )
{%- endmacro %}


{% macro json_texts_item(texts, json, paths, path) -%}
    {%- if path not in paths -%}
        {{ exceptions.raise_compiler_error("json_texts_item: " ~ path ~ " is not one of the paths " ~ paths) }}
    {%- endif -%}
    {{ return(adapter.dispatch('json_texts_item', 'segment_accounts')(texts, json, paths, path)) }}
{%- endmacro %}

{% macro default__json_texts_item(texts, json, paths, path) -%}
    {{ segment_accounts.json_text(json, path) }}
{%- endmacro %}

{% macro duckdb__json_texts_item(texts, json, paths, path) -%}
    {{ texts }}[{{ paths.index(path) + 1 }}]
{%- endmacro %}


{% macro json_values(json, paths) -%}
    {{ return(adapter.dispatch('json_values', 'segment_accounts')(json, paths)) }}
{%- endmacro %}

{% macro default__json_values(json, paths) -%}
    cast(null as {{ dbt.type_string() }})
{%- endmacro %}

{% macro duckdb__json_values(json, paths) -%}
    json_extract(
        {{ json }},
        [{% for path in paths %}'{{ segment_accounts.duckdb_json_path(path) }}'{{ ", " if not loop.last }}{% endfor %}]
    )
{%- endmacro %}


{% macro json_values_item(values, json, paths, path) -%}
    {%- if path not in paths -%}
        {{ exceptions.raise_compiler_error("json_values_item: " ~ path ~ " is not one of the paths " ~ paths) }}
    {%- endif -%}
    {{ return(adapter.dispatch('json_values_item', 'segment_accounts')(values, json, paths, path)) }}
{%- endmacro %}

{% macro default__json_values_item(values, json, paths, path) -%}
    {{ segment_accounts.json_value(json, path) }}
{%- endmacro %}

{% macro duckdb__json_values_item(values, json, paths, path) -%}
    {{ values }}[{{ paths.index(path) + 1 }}]
{%- endmacro %}


{#-
    The keyword for the CTE that parses the documents: Postgres inlines a CTE used once, which would put the
    jsonb cast back into every field that reads it (one parse per field); `materialized` keeps it one parse.
    DuckDB needs nothing (its JSON is text, and json_texts already parses once): materializing would only
    copy every payload.
-#}
{% macro parsed_json_cte() -%}
    {{ return(adapter.dispatch('parsed_json_cte', 'segment_accounts')()) }}
{%- endmacro %}

{% macro default__parsed_json_cte() -%}{%- endmacro %}

{% macro postgres__parsed_json_cte() -%}
    materialized
{%- endmacro %}
