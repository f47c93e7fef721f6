{#-
    Rule "time": when the event happened, in UTC.
      1. the event's `timestamp` (Segment sets it to the device time corrected for clock skew);
      2. else receivedAt - (sentAt - originalTimestamp): the device's own time, minus its clock's error;
      3. else our `received_at`.
    Arguments are UTC timestamps already parsed (iso8601_to_utc); a value that did not parse is null and the
    rule falls through to the next source.
-#}
{% macro segment_occurred_at(event_timestamp, payload_received_at, sent_at, original_timestamp, received_at) -%}
    coalesce(
        {{ event_timestamp }},
        {{ segment_accounts.subtract_clock_skew(payload_received_at, sent_at, original_timestamp) }},
        {{ received_at }}
    )
{%- endmacro %}
