{#-
    Which of a call's ids decides its contact: its user id when it has one, else its anonymous id (as
    int_events_identified resolves each event). The identifier_type to join int_contact_identifiers_resolved on.
-#}
{% macro call_identifier_type(user_id) -%}
    case when {{ user_id }} is not null then 'user_id' else 'anonymous_id' end
{%- endmacro %}
