{#- Every `*_at` column is a `timestamp` without time zone holding UTC. -#}

{#- A `timestamp with time zone` (the loader's `received_at`) as a UTC `timestamp`. -#}
{% macro to_utc_timestamp(expr) -%}
    {{ return(adapter.dispatch('to_utc_timestamp', 'segment_accounts')(expr)) }}
{%- endmacro %}

{% macro default__to_utc_timestamp(expr) -%}
    cast(({{ expr }}) at time zone 'UTC' as {{ dbt.type_timestamp() }})
{%- endmacro %}

{% macro duckdb__to_utc_timestamp(expr) -%}
    timezone('UTC', cast({{ expr }} as timestamptz))
{%- endmacro %}

{% macro postgres__to_utc_timestamp(expr) -%}
    (cast({{ expr }} as timestamptz) at time zone 'UTC')
{%- endmacro %}


{#-
    ISO-8601 text as a UTC `timestamp`: `2024-05-01T10:00:00.123+02:00`, `...Z`, `...+0200`, no fraction,
    or no offset at all (read as UTC, never as the session's time zone). Anything else is null, so the
    occurred_at rule falls through to its next source instead of failing the build.
-#}
{% macro iso8601_to_utc(text) -%}
    case
        when {{ segment_accounts.regexp_like(text, segment_accounts.iso8601_with_offset_pattern()) }}
            then {{ adapter.dispatch('iso8601_with_offset_to_utc', 'segment_accounts')(text) }}
        when {{ segment_accounts.regexp_like(text, segment_accounts.iso8601_without_offset_pattern()) }}
            then {{ adapter.dispatch('iso8601_without_offset_to_utc', 'segment_accounts')(text) }}
    end
{%- endmacro %}

{% macro iso8601_with_offset_pattern() -%}
    '^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}([.][0-9]+)?)? ?([zZ]|[+-][0-9]{2}(:?[0-9]{2})?)$'
{%- endmacro %}

{% macro iso8601_without_offset_pattern() -%}
    '^[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}([.][0-9]+)?)?)?$'
{%- endmacro %}

{% macro default__iso8601_with_offset_to_utc(text) -%}
    {{ segment_accounts.to_utc_timestamp('cast(' ~ text ~ ' as ' ~ dbt.type_timestamp() ~ ' with time zone)') }}
{%- endmacro %}

{% macro duckdb__iso8601_with_offset_to_utc(text) -%}
    {#- try_cast: a shape-valid but impossible date (month 13) is null, not an error. -#}
    timezone('UTC', try_cast({{ text }} as timestamptz))
{%- endmacro %}

{% macro postgres__iso8601_with_offset_to_utc(text) -%}
    (cast({{ text }} as timestamptz) at time zone 'UTC')
{%- endmacro %}

{% macro default__iso8601_without_offset_to_utc(text) -%}
    cast({{ text }} as {{ dbt.type_timestamp() }})
{%- endmacro %}

{% macro duckdb__iso8601_without_offset_to_utc(text) -%}
    try_cast({{ text }} as timestamp)
{%- endmacro %}

{% macro postgres__iso8601_without_offset_to_utc(text) -%}
    cast({{ text }} as timestamp)
{%- endmacro %}


{#- receivedAt - (sentAt - originalTimestamp): the device's clock skew taken out of its own timestamp. -#}
{% macro subtract_clock_skew(received_at, sent_at, original_timestamp) -%}
    {{ return(adapter.dispatch('subtract_clock_skew', 'segment_accounts')(received_at, sent_at, original_timestamp)) }}
{%- endmacro %}

{% macro default__subtract_clock_skew(received_at, sent_at, original_timestamp) -%}
    ({{ received_at }} - ({{ sent_at }} - {{ original_timestamp }}))
{%- endmacro %}

{% macro duckdb__subtract_clock_skew(received_at, sent_at, original_timestamp) -%}
    ({{ received_at }} - ({{ sent_at }} - {{ original_timestamp }}))
{%- endmacro %}

{% macro postgres__subtract_clock_skew(received_at, sent_at, original_timestamp) -%}
    ({{ received_at }} - ({{ sent_at }} - {{ original_timestamp }}))
{%- endmacro %}


{#- Now, as a UTC `timestamp`. -#}
{% macro utc_now() -%}
    {{ segment_accounts.to_utc_timestamp(dbt.current_timestamp()) }}
{%- endmacro %}
