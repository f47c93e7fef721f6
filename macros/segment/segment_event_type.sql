{#- Rule "type mapping": Segment's message type to the event type analysts filter on. -#}
{% macro segment_event_type(message_type) -%}
    case {{ message_type }}
        when 'page' then 'Page'
        when 'screen' then 'Screen'
        when 'track' then 'Action'
        when 'identify' then 'Contact'
        when 'group' then 'Account'
        when 'alias' then 'Alias'
    end
{%- endmacro %}
