{#-
    A filter keeping the rows of `column`'s loads that an incremental model has not read: `loads_sql` is the
    query listing those loads, which the model also holds as its CTE `loads_cte`. When the model runs, the ids
    are read first and written into the filter as literals: the warehouse then skips the other loads' rows as it
    scans, even under a view's joins, which a join on the subquery does not reach (DuckDB cleaned every event's
    ids in int_identifiers_cleaned to keep the 1% a run reads: 17x slower at 1M events). A unit test, whose
    inputs exist only inside the model's query, gets the subquery on the CTE.
-#}
{% macro in_loads_not_read(column, loads_sql, loads_cte) -%}
    {%- if execute and this is not string -%}
        {%- set load_ids = run_query(loads_sql).columns[0].values() -%}
        {%- if load_ids | length == 0 -%}
            1 = 0
        {%- else -%}
            {{ column }} in (
                {%- for load_id in load_ids -%}
                    {{ dbt.string_literal(load_id) }}{{ ', ' if not loop.last }}
                {%- endfor -%}
            )
        {%- endif -%}
    {%- else -%}
        {{ column }} in (select {{ loads_cte }}._dlt_load_id from {{ loads_cte }})
    {%- endif -%}
{%- endmacro %}

{#-
    The query listing the loads in `staged` (staging's events) that `read` (the model itself, or its build state
    of loads read) has not: each side's distinct load ids first, then an anti-join. Both sides hold every event,
    and `not in` over them compared row by row: 0.5-1 s a run at 5M events, where this takes 0.02 s.
-#}
{% macro loads_not_read(staged, read) -%}
    select staged_loads._dlt_load_id
    from (
        select distinct staged_events._dlt_load_id
        from {{ staged }} as staged_events
        where staged_events._dlt_load_id is not null
    ) as staged_loads
    where not exists (
        select 1
        from (select distinct read_rows._dlt_load_id from {{ read }} as read_rows) as read_loads
        where read_loads._dlt_load_id = staged_loads._dlt_load_id
    )
{%- endmacro %}
