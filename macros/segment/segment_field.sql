{#-
    A top-level Segment field, read as camelCase or snake_case (`userId` or `user_id`): libraries and
    hand-written HTTP calls use both. camelCase wins when an event carries both.
-#}
{% macro segment_field(payload, camel_case_key) -%}
    {%- set snake_case_key = segment_accounts.to_snake_case(camel_case_key) -%}
    {%- if snake_case_key == camel_case_key -%}
        {{ segment_accounts.json_text(payload, [camel_case_key]) }}
    {%- else -%}
        coalesce(
            {{ segment_accounts.json_text(payload, [camel_case_key]) }},
            {{ segment_accounts.json_text(payload, [snake_case_key]) }}
        )
    {%- endif -%}
{%- endmacro %}

{#- messageId -> message_id, originalTimestamp -> original_timestamp -#}
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
