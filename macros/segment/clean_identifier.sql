{#-
    Rule "identifiers", part one: ids are trimmed and an empty id is no id. Part two (junk values such as
    `undefined`) is a join against the seed `junk_identifiers` in int_identifiers_cleaned, so users can extend
    the list without touching SQL. `normalized_identifier` is the form that join compares.
-#}
{% macro clean_identifier(expr) -%}
    nullif(trim({{ expr }}), '')
{%- endmacro %}

{% macro normalized_identifier(expr) -%}
    lower(trim({{ expr }}))
{%- endmacro %}
