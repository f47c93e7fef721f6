{#-
    Rule "identifiers", part zero: what counts as an id, the same rule intake applies (pipelines/validation.py).
    Segment's ids are strings; a number is accepted and becomes its canonical text (`42`, `42.0` and `4.2e1`
    are all `42`; `1.50` is `1.5`). `true`, an array or an object is no id at all: read as text they would
    become one (`true`, `[]`), and every visitor sending it would merge into one contact.
    `json` is the payload, `camel_key` / `snake_key` the top-level key in both spellings, `camel_value` /
    `snake_value` their JSON values (not texts) as the caller already read them; camelCase wins unless it is
    absent or null, as at intake. Targets without a version here (compiled only) read the keys' texts.
-#}
{% macro segment_identifier(json, camel_key, snake_key, camel_value, snake_value) -%}
    {{ return(adapter.dispatch('segment_identifier', 'segment_accounts')(
        json, camel_key, snake_key, camel_value, snake_value)) }}
{%- endmacro %}

{% macro default__segment_identifier(json, camel_key, snake_key, camel_value, snake_value) -%}
    coalesce(
        {{ segment_accounts.json_text(json, [camel_key]) }},
        {{ segment_accounts.json_text(json, [snake_key]) }}
    )
{%- endmacro %}

{% macro duckdb__segment_identifier(json, camel_key, snake_key, camel_value, snake_value) -%}
    {%- set value = "coalesce(case when json_type(" ~ camel_value ~ ") <> 'NULL' then " ~ camel_value
        ~ " end, " ~ snake_value ~ ")" -%}
    {%- set text = "json_extract_string(" ~ value ~ ", '$')" -%}
    case
        when json_type({{ value }}) = 'VARCHAR' then {{ text }}
        when json_type({{ value }}) not in ('BIGINT', 'UBIGINT', 'DOUBLE') then null
        when regexp_full_match({{ text }}, '-?0+([.]0+)?') then '0'
        when regexp_full_match({{ text }}, '-?[0-9]+') then {{ text }}
        -- a fraction: trailing zeros dropped (and the point when nothing is left after it)
        when regexp_full_match({{ text }}, '-?[0-9]+[.][0-9]+') then regexp_replace({{ text }}, '[.]?0+$', '')
        -- an exponent: through a double, whole numbers as integer digits
        when cast({{ text }} as double) = trunc(cast({{ text }} as double))
            and abs(cast({{ text }} as double)) < 1e38
            then cast(cast(cast({{ text }} as double) as hugeint) as varchar)
        else cast(cast({{ text }} as double) as varchar)
    end
{%- endmacro %}

{% macro postgres__segment_identifier(json, camel_key, snake_key, camel_value, snake_value) -%}
    {%- set value = "coalesce(case when jsonb_typeof(" ~ camel_value ~ ") <> 'null' then " ~ camel_value
        ~ " end, " ~ snake_value ~ ")" -%}
    case jsonb_typeof({{ value }})
        when 'string' then {{ value }} #>> '{}'
        when 'number' then cast(trim_scale(cast({{ value }} #>> '{}' as numeric)) as text)
    end
{%- endmacro %}
