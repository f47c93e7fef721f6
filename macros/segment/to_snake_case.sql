{#-
    messageId -> message_id, originalTimestamp -> original_timestamp. Libraries and hand-written HTTP calls send
    Segment's top-level keys in either spelling; stg_segment__events reads both (camelCase wins when an event
    carries both).
-#}
{% macro to_snake_case(camel_case_key) -%}
    {%- set ns = namespace(out='') -%}
    {%- for character in camel_case_key -%}
        {%- if character.isupper() -%}
            {%- set ns.out = ns.out ~ '_' ~ character.lower() -%}
        {%- else -%}
            {%- set ns.out = ns.out ~ character -%}
        {%- endif -%}
    {%- endfor -%}
    {{ ns.out }}
{%- endmacro %}
