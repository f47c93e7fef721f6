{#-
    Many texts (`as_text`, as json_text gives them) or JSON values (as json_value gives them) at static paths of
    one JSON document, for the one model that reads every event (stg_segment__events): the document is parsed
    once per batch, not once per field.

    In a CTE that selects the parsed document (`parse_json(payload) as payload`, from a CTE declared with
    `parsed_json_cte()`), add the column `json_batch('payload', paths) as payload_texts`; then, in the next CTE,
    `json_batch_item('payload_texts', 'payload', paths, ['context', 'groupId'])` is the text at that path.
    `paths` (a list of paths, each a list of keys) and `as_text` are the same in both calls.

    DuckDB keeps JSON as text and re-parses it in every json_extract call: there the batch is one multi-path
    json_extract_string / json_extract (one parse, a list) and the item is a list element. Elsewhere the parsed
    document is the warehouse's own type (Postgres: jsonb, parsed once by the cast), so the item is an ordinary
    json_text / json_value on it and the batch is only a placeholder column.
-#}

{% macro json_batch(json, paths, as_text=true) -%}
    {{ return(adapter.dispatch('json_batch', 'segment_accounts')(json, paths, as_text)) }}
{%- endmacro %}

{% macro default__json_batch(json, paths, as_text) -%}
    cast(null as {{ dbt.type_string() }})
{%- endmacro %}

{% macro duckdb__json_batch(json, paths, as_text) -%}
    {{ 'json_extract_string' if as_text else 'json_extract' }}(
        {{ json }},
        [{% for path in paths %}'{{ segment_accounts.duckdb_json_path(path) }}'{{ ", " if not loop.last }}{% endfor %}]
    )
{%- endmacro %}


{% macro json_batch_item(batch, json, paths, path, as_text=true) -%}
    {%- if path not in paths -%}
        {{ exceptions.raise_compiler_error("json_batch_item: " ~ path ~ " is not one of the paths " ~ paths) }}
    {%- endif -%}
    {{ return(adapter.dispatch('json_batch_item', 'segment_accounts')(batch, json, paths, path, as_text)) }}
{%- endmacro %}

{% macro default__json_batch_item(batch, json, paths, path, as_text) -%}
    {%- if as_text -%}
        {{ segment_accounts.json_text(json, path) }}
    {%- else -%}
        {{ segment_accounts.json_value(json, path) }}
    {%- endif -%}
{%- endmacro %}

{% macro duckdb__json_batch_item(batch, json, paths, path, as_text) -%}
    {{ batch }}[{{ paths.index(path) + 1 }}]
{%- endmacro %}


{#-
    The keyword for the CTE that parses the documents: Postgres inlines a CTE used once, which would put the
    jsonb cast back into every field that reads it (one parse per field); `materialized` keeps it one parse.
    DuckDB needs nothing (its JSON is text, and json_batch already parses once): materializing would only
    copy every payload.
-#}
{% macro parsed_json_cte() -%}
    {{ return(adapter.dispatch('parsed_json_cte', 'segment_accounts')()) }}
{%- endmacro %}

{% macro default__parsed_json_cte() -%}{%- endmacro %}

{% macro postgres__parsed_json_cte() -%}
    materialized
{%- endmacro %}
