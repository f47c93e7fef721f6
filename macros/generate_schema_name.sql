{#-
    A node's schema is exactly its `+schema` (dbt_project.yml: `staging`, `intermediate`, `analytics`, `seeds`),
    not dbt's default `<profile schema>_<custom schema>`: analysts and the docs name the marts'
    schema `analytics` on every warehouse. A node without one stays in the profile's schema.
-#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
