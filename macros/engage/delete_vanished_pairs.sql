{#-
    Post-hook of fct_audience_history: delete the history of (contact, key) pairs that no longer exist. A later
    alias can merge a contact into another (or give it a new canonical user id, hence a new contact_id); its old
    rows must go, or the history would point at a contact that no longer exists. delete+insert alone cannot do
    this: it only replaces the pairs the run rebuilds.
-#}
{% macro delete_vanished_pairs(history, pairs) -%}
    {{ return(adapter.dispatch('delete_vanished_pairs', 'segment_accounts')(history, pairs)) }}
{%- endmacro %}

{% macro default__delete_vanished_pairs(history, pairs) -%}
    delete from {{ history }} as history
    where not exists (
        select 1 from {{ pairs }} as pairs
        where
            pairs.contact_id = history.contact_id
            and pairs.computation_key = history.computation_key
    )
{%- endmacro %}
