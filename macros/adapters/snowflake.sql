{#-
    Snowflake (dbt-snowflake) versions of every dispatched macro of this project, written from Snowflake's SQL
    reference. Not run against a Snowflake account here (no connection from this machine): they compile,
    nothing more is proven.

    Conventions on Snowflake:
    - JSON is VARIANT: parse_json once in stg_segment__events, then GET / GET_PATH on the VARIANT. Text is
      `to_varchar(strip_null_value(...))`: a string without its quotes, objects and arrays as JSON text, a JSON
      null as SQL null.
    - Every `*_at` column is TIMESTAMP_NTZ holding UTC (convert_timezone to UTC, then the wall clock).
    - REGEXP_LIKE matches the whole text, as DuckDB's regexp_full_match does.
-#}

{#- `"key"."key"`: GET_PATH with every key quoted, so a key may hold any character but a double quote. -#}
{% macro snowflake_json_path(path) -%}
    {% for key in path %}"{{ key }}"{{ "." if not loop.last }}{% endfor %}
{%- endmacro %}

{% macro snowflake_json_as_text(variant) -%}
    to_varchar(strip_null_value({{ variant }}))
{%- endmacro %}

{% macro snowflake__json_text(json, path) -%}
    {{ segment_accounts.snowflake_json_as_text('get_path(' ~ json ~ ', \'' ~ segment_accounts.snowflake_json_path(path) ~ '\')') }}
{%- endmacro %}

{% macro snowflake__json_value(json, path) -%}
    get_path({{ json }}, '{{ segment_accounts.snowflake_json_path(path) }}')
{%- endmacro %}

{#-
    Paths that are data: GET takes a key computed per row, GET_PATH only a constant path, so a dotted path
    (at most eight names, see trait_path_pattern) is one GET per name, chosen by the number of names.
-#}
{% macro snowflake__json_text_at_dotted_path(json, path_expr) -%}
    case regexp_count({{ path_expr }}, '[.]')
    {%- for depth in range(8) %}
        when {{ depth }} then {{ segment_accounts.snowflake_json_as_text(
            segment_accounts.snowflake_get_chain(json, path_expr, depth + 1)) }}
    {%- endfor %}
    end
{%- endmacro %}

{% macro snowflake_get_chain(json, path_expr, names) -%}
    {%- set ns = namespace(expr=json) -%}
    {%- for position in range(1, names + 1) -%}
        {%- set ns.expr = 'get(' ~ ns.expr ~ ', split_part(' ~ path_expr ~ ", '.', " ~ position ~ '))' -%}
    {%- endfor -%}
    {{ ns.expr }}
{%- endmacro %}

{% macro snowflake__json_text_at_key(json, key_expr) -%}
    {{ segment_accounts.snowflake_json_as_text('get(' ~ json ~ ', ' ~ key_expr ~ ')') }}
{%- endmacro %}

{#- JSON text that keeps the value's type (strings quoted); null when the key is absent. -#}
{% macro snowflake__json_value_at_key(json, key_expr) -%}
    to_json(get({{ json }}, {{ key_expr }}))
{%- endmacro %}

{#- A table function in FROM may read the tables before it (Snowflake makes it lateral): columns key, value. -#}
{% macro snowflake__json_each(json) -%}
    table(flatten(input => {{ json }}))
{%- endmacro %}

{% macro snowflake__json_object_agg(key, value) -%}
    object_agg({{ key }}, {{ value }})
{%- endmacro %}

{% macro snowflake__json_is_object(json) -%}
    is_object({{ json }})
{%- endmacro %}

{#- HASH is a signed 64-bit integer. -#}
{% macro snowflake__hash64(expr) -%}
    hash({{ expr }})
{%- endmacro %}

{#- The loader's received_at is TIMESTAMP_TZ: its UTC wall clock. -#}
{% macro snowflake__to_utc_timestamp(expr) -%}
    convert_timezone('UTC', {{ expr }})::timestamp_ntz
{%- endmacro %}

{#-
    TRY_TO_TIMESTAMP_TZ's AUTO format reads ISO-8601 with `Z` or `+hh:mm`; `+hhmm`, `+hh` and a space before
    the offset get explicit formats. A value none of them reads is null.
-#}
{% macro snowflake__iso8601_with_offset_to_utc(text) -%}
    convert_timezone('UTC', coalesce(
        try_to_timestamp_tz({{ text }}),
        try_to_timestamp_tz(replace(upper({{ text }}), ' ', 'T'), 'YYYY-MM-DD"T"HH24:MI:SS.FFTZHTZM'),
        try_to_timestamp_tz(replace(upper({{ text }}), ' ', 'T'), 'YYYY-MM-DD"T"HH24:MI:SSTZHTZM'),
        try_to_timestamp_tz(replace(upper({{ text }}), ' ', 'T'), 'YYYY-MM-DD"T"HH24:MI:SS.FFTZH'),
        try_to_timestamp_tz(replace(upper({{ text }}), ' ', 'T'), 'YYYY-MM-DD"T"HH24:MI:SSTZH'),
        try_to_timestamp_tz(replace(upper({{ text }}), ' ', 'T'), 'YYYY-MM-DD"T"HH24:MITZH:TZM')
    ))::timestamp_ntz
{%- endmacro %}

{#- No offset: the wall clock is UTC already, never the session's time zone. -#}
{% macro snowflake__iso8601_without_offset_to_utc(text) -%}
    try_to_timestamp_ntz({{ text }})
{%- endmacro %}

{% macro snowflake__subtract_clock_skew(received_at, sent_at, original_timestamp) -%}
    dateadd(
        microsecond,
        -datediff(microsecond, {{ original_timestamp }}, {{ sent_at }}),
        {{ received_at }}
    )
{%- endmacro %}
