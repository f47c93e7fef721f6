{#-
    A 64-bit integer hash of a text value. The connected-components passes compare and join these instead of
    the identifier strings: integers are cheaper, and a hash orders the nodes at random, which is what keeps
    the number of passes logarithmic whatever order the ids were issued in (sequential ids along a chain are
    the worst case for min-label hooking). A collision would merge two people, so the data test
    `assert_identity_hashes_are_unique` fails the build if two identifiers ever share a hash.
-#}
{% macro hash64(expr) -%}
    {{ return(adapter.dispatch('hash64', 'segment_accounts')(expr)) }}
{%- endmacro %}

{% macro default__hash64(expr) -%}
    {#- No portable 64-bit hash: the md5 text sorts just as randomly, it is only slower to join. -#}
    {{ dbt.hash(expr) }}
{%- endmacro %}

{% macro duckdb__hash64(expr) -%}
    hash({{ expr }})
{%- endmacro %}

{% macro postgres__hash64(expr) -%}
    hashtextextended({{ expr }}, 0)
{%- endmacro %}
