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
    or no offset at all (read as UTC, never as the session's time zone); RFC 3339's lowercase t and z, and a
    space before the offset, too. Anything else is null, so the
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

{#-
    One rule on every target: years 0001-9999 (Postgres has no year 0000, DuckDB and Python's intake disagree
    on it) and offsets up to +/-15:59 (DuckDB reads larger ones, Postgres refuses them): anything else is no time.
-#}
{% macro iso8601_year_pattern() -%}
    ([1-9][0-9]{3}|0[1-9][0-9]{2}|00[1-9][0-9]|000[1-9])
{%- endmacro %}

{% macro iso8601_with_offset_pattern() -%}
    '^{{ segment_accounts.iso8601_year_pattern() }}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}(:[0-9]{2}([.][0-9]+)?)? ?([zZ]|[+-](0[0-9]|1[0-5])(:?[0-9]{2})?)$'
{%- endmacro %}

{% macro iso8601_without_offset_pattern() -%}
    '^{{ segment_accounts.iso8601_year_pattern() }}-[0-9]{2}-[0-9]{2}([Tt ][0-9]{2}:[0-9]{2}(:[0-9]{2}([.][0-9]+)?)?)?$'
{%- endmacro %}

{% macro default__iso8601_with_offset_to_utc(text) -%}
    {{ segment_accounts.to_utc_timestamp('cast(' ~ text ~ ' as ' ~ dbt.type_timestamp() ~ ' with time zone)') }}
{%- endmacro %}

{% macro duckdb__iso8601_with_offset_to_utc(text) -%}
    {#-
        try_cast: a shape-valid but impossible date (month 13) is null, not an error. DuckDB reads neither a
        lowercase z (RFC 3339 allows it) nor a space before the offset: those few are rewritten, and only
        they (the second try runs where the first gave null).
    -#}
    timezone('UTC', coalesce(
        try_cast({{ text }} as timestamptz),
        try_cast(regexp_replace(upper({{ text }}), ' ?(Z|[+-][0-9:]+)$', '\1') as timestamptz)
    ))
{%- endmacro %}

{% macro postgres__iso8601_with_offset_to_utc(text) -%}
    case
        when {{ segment_accounts.postgres_iso8601_is_valid(text, segment_accounts.postgres_iso8601_with_offset_pattern()) }}
            then (cast({{ segment_accounts.postgres_iso8601_microseconds(text) }} as timestamptz) at time zone 'UTC')
    end
{%- endmacro %}

{% macro default__iso8601_without_offset_to_utc(text) -%}
    cast({{ text }} as {{ dbt.type_timestamp() }})
{%- endmacro %}

{% macro duckdb__iso8601_without_offset_to_utc(text) -%}
    {#- the second try only where the first gave null: a lowercase t -#}
    coalesce(try_cast({{ text }} as timestamp), try_cast(upper({{ text }}) as timestamp))
{%- endmacro %}

{% macro postgres__iso8601_without_offset_to_utc(text) -%}
    case
        when {{ segment_accounts.postgres_iso8601_is_valid(text, segment_accounts.postgres_iso8601_without_offset_pattern()) }}
            then cast({{ segment_accounts.postgres_iso8601_microseconds(text) }} as timestamp)
    end
{%- endmacro %}

{#-
    Postgres has no try_cast and fails the whole statement on a date it cannot hold, so one event with
    `2024-02-30` or an offset of +25:00 would stop every build. The text (already of the right shape) is
    checked first and is null when impossible, as DuckDB's try_cast gives: month, day of that month, hour,
    minute, second (no leap second; 24:00 only as midnight ending the day), offset up to 15:59, year from 1.
-#}
{% macro postgres_iso8601_is_valid(text, strict_pattern) -%}
    case
        when not {{ segment_accounts.regexp_like(text, strict_pattern) }} then false
        when left({{ text }}, 4) = '0000' then false
        else cast(substr({{ text }}, 9, 2) as integer) <= extract(day from (
            make_date(cast(left({{ text }}, 4) as integer), cast(substr({{ text }}, 6, 2) as integer), 1)
            + interval '1 month - 1 day'
        ))
    end
{%- endmacro %}

{% macro postgres_iso8601_date_pattern() -%}
    [0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])
{%- endmacro %}

{% macro postgres_iso8601_time_pattern() -%}
    (([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9]([.][0-9]+)?)?|24:00(:00([.]0+)?)?)
{%- endmacro %}

{% macro postgres_iso8601_with_offset_pattern() -%}
    '^{{ segment_accounts.postgres_iso8601_date_pattern() }}[Tt ]{{ segment_accounts.postgres_iso8601_time_pattern() -}}
    [ ]?([zZ]|[+-](0[0-9]|1[0-5])(:?[0-5][0-9])?)$'
{%- endmacro %}

{% macro postgres_iso8601_without_offset_pattern() -%}
    '^{{ segment_accounts.postgres_iso8601_date_pattern() }}([Tt ]{{ segment_accounts.postgres_iso8601_time_pattern() }})?$'
{%- endmacro %}

{#- Digits past the microsecond cut off, not rounded: DuckDB truncates, Postgres would round. -#}
{% macro postgres_iso8601_microseconds(text) -%}
    regexp_replace({{ text }}, '([.][0-9]{6})[0-9]+', '\1')
{%- endmacro %}

{#- receivedAt - (sentAt - originalTimestamp): the device's clock skew taken out of its own timestamp. -#}
{% macro subtract_clock_skew(received_at, sent_at, original_timestamp) -%}
    {{ return(adapter.dispatch('subtract_clock_skew', 'segment_accounts')(received_at, sent_at, original_timestamp)) }}
{%- endmacro %}

{% macro default__subtract_clock_skew(received_at, sent_at, original_timestamp) -%}
    ({{ received_at }} - ({{ sent_at }} - {{ original_timestamp }}))
{%- endmacro %}

{#- Now, as a UTC `timestamp`. -#}
{% macro utc_now() -%}
    {{ segment_accounts.to_utc_timestamp(dbt.current_timestamp()) }}
{%- endmacro %}


{#-
    "Now" for reports (the example queries in analyses/): var segment_accounts__account_activity_as_of (an
    ISO-8601 timestamp) when set, so a report can be re-run for a past day, else the time of the query.
-#}
{% macro activity_as_of() -%}
    {%- set as_of = var('segment_accounts__account_activity_as_of') -%}
    {%- if as_of -%}
        {{ segment_accounts.iso8601_to_utc("'" ~ (as_of | replace("'", "''")) ~ "'") }}
    {%- else -%}
        {{ segment_accounts.utc_now() }}
    {%- endif -%}
{%- endmacro %}
