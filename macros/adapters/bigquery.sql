{#-
    BigQuery (dbt-bigquery, GoogleSQL) versions of every dispatched macro of this project, written from the
    GoogleSQL reference. Not run against BigQuery here (no connection from this machine): they compile, nothing
    more is proven.

    Conventions on BigQuery:
    - JSON is the JSON type: parse_json once in stg_segment__events (wide numbers rounded rather than failing
      the build), then JSON_QUERY / JSON_VALUE and the subscript operator. Text is a scalar's string
      (JSON_VALUE), or the JSON text of an object or array (TO_JSON_STRING), as DuckDB's json_extract_string.
    - Every `*_at` column is DATETIME holding UTC: dbt's dateadd on BigQuery returns DATETIME, and BigQuery
      does not compare TIMESTAMP with DATETIME.
    - REGEXP_CONTAINS finds a match anywhere: patterns are anchored to match the whole text.
-#}

{% macro bigquery__parse_json(text) -%}
    parse_json({{ text }}, wide_number_mode => 'round')
{%- endmacro %}

{#- `$."key"."key"`: JSONPath with every key quoted, so a key may hold any character but a double quote. -#}
{% macro bigquery_json_path(path) -%}
    ${% for key in path %}."{{ key }}"{% endfor %}
{%- endmacro %}

{#- A JSON value as text: a scalar's string, an object's or array's JSON text, null for JSON null. -#}
{% macro bigquery_json_as_text(json_value) -%}
    case json_type({{ json_value }})
        when 'object' then to_json_string({{ json_value }})
        when 'array' then to_json_string({{ json_value }})
        else json_value({{ json_value }})
    end
{%- endmacro %}

{% macro bigquery__json_text(json, path) -%}
    {{ segment_accounts.bigquery_json_as_text(
        'json_query(' ~ json ~ ", '" ~ segment_accounts.bigquery_json_path(path) ~ "')") }}
{%- endmacro %}

{% macro bigquery__json_value(json, path) -%}
    json_query({{ json }}, '{{ segment_accounts.bigquery_json_path(path) }}')
{%- endmacro %}

{#-
    Paths that are data: JSONPath must be a constant, the subscript operator takes a key computed per row, so
    a dotted path (at most eight names, see trait_path_pattern) is one subscript per name, chosen by the number
    of names.
-#}
{% macro bigquery__json_text_at_dotted_path(json, path_expr) -%}
    case array_length(split({{ path_expr }}, '.'))
    {%- for names in range(1, 9) %}
        when {{ names }} then {{ segment_accounts.bigquery_json_as_text(
            segment_accounts.bigquery_subscript_chain(json, path_expr, names)) }}
    {%- endfor %}
    end
{%- endmacro %}

{% macro bigquery_subscript_chain(json, path_expr, names) -%}
    {{ json }}{% for offset in range(names) %}[split({{ path_expr }}, '.')[offset({{ offset }})]]{% endfor %}
{%- endmacro %}

{% macro bigquery__json_text_at_key(json, key_expr) -%}
    {{ segment_accounts.bigquery_json_as_text(json ~ '[' ~ key_expr ~ ']') }}
{%- endmacro %}

{#- JSON text that keeps the value's type (strings quoted); null when the key is absent. -#}
{% macro bigquery__json_value_at_key(json, key_expr) -%}
    case when {{ json }}[{{ key_expr }}] is not null then to_json_string({{ json }}[{{ key_expr }}]) end
{%- endmacro %}

{#-
    One row per top-level key for `cross join ... as alias`: an UNNEST of structs (key, value), built from
    JSON_KEYS at depth 1. A correlated UNNEST may read the table before it.
-#}
{% macro bigquery__json_each(json) -%}
    unnest(array(
        select as struct
            object_key as key,
            {{ json }}[object_key] as value
        from unnest(json_keys({{ json }}, 1)) as object_key
    ))
{%- endmacro %}

{#- Keys sorted so that equal objects print equally. -#}
{% macro bigquery__json_object_agg(key, value) -%}
    json_object(array_agg({{ key }} order by {{ key }}), array_agg({{ value }} order by {{ key }}))
{%- endmacro %}

{% macro bigquery__json_is_object(json) -%}
    (json_type({{ json }}) = 'object')
{%- endmacro %}

{% macro bigquery__regexp_like(expr, pattern) -%}
    regexp_contains({{ expr }}, concat('^(?:', {{ pattern }}, ')$'))
{%- endmacro %}

{#- FARM_FINGERPRINT is a signed 64-bit integer. -#}
{% macro bigquery__hash64(expr) -%}
    farm_fingerprint({{ expr }})
{%- endmacro %}

{#- The loader's received_at is TIMESTAMP: its UTC wall clock as DATETIME. -#}
{% macro bigquery__to_utc_timestamp(expr) -%}
    datetime(cast({{ expr }} as timestamp), 'UTC')
{%- endmacro %}

{#-
    A timestamp string with an offset: the canonical format reads `+hh:mm`, `+hh` and `Z`; `+hhmm` gets an
    explicit format. Null (SAFE) when nothing reads it.
-#}
{% macro bigquery__iso8601_with_offset_to_utc(text) -%}
    datetime(coalesce(
        safe_cast(replace(upper({{ text }}), ' Z', 'Z') as timestamp),
        safe.parse_timestamp('%Y-%m-%dT%H:%M:%E*S%z', replace(upper({{ text }}), ' ', 'T')),
        safe.parse_timestamp('%Y-%m-%dT%H:%M%z', replace(upper({{ text }}), ' ', 'T'))
    ), 'UTC')
{%- endmacro %}

{#- No offset: the wall clock is UTC already. -#}
{% macro bigquery__iso8601_without_offset_to_utc(text) -%}
    coalesce(
        safe_cast({{ text }} as datetime),
        safe.parse_datetime('%Y-%m-%dT%H:%M', replace({{ text }}, ' ', 'T'))
    )
{%- endmacro %}

{% macro bigquery__subtract_clock_skew(received_at, sent_at, original_timestamp) -%}
    datetime_sub(
        {{ received_at }},
        interval datetime_diff({{ sent_at }}, {{ original_timestamp }}, microsecond) microsecond
    )
{%- endmacro %}
