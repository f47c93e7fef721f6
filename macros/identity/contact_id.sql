{#-
    contact_id: md5 of the contact's canonical identifier, prefixed by its kind so that an anonymous id that
    happens to equal some user id never shares its contact_id. Deterministic: the same data always gives the
    same ids, on every warehouse (dbt.hash is md5 everywhere). It follows the canonical user id, so a later alias
    that makes a new user id canonical gives the contact a new contact_id (and every event follows it on the
    next build): store user_id, not contact_id, outside the warehouse.
-#}
{% macro contact_id(canonical_user_id, anonymous_id) -%}
    case
        when {{ canonical_user_id }} is not null
            then {{ dbt.hash(dbt.concat(["'user_id:'", canonical_user_id])) }}
        else {{ dbt.hash(dbt.concat(["'anonymous_id:'", anonymous_id])) }}
    end
{%- endmacro %}
