{#-
    Rule "Engage": every identify or track that carries `context.personas` for an audience, a journey step or a
    computed trait, with the contact it belongs to and the value it sets. Engage sends one call per identifier
    of a profile, so the same change arrives several times; fct_audience_history keeps one row per change.
-#}

with

events as (

    -- staging read the computation class in its one pass: only Engage's calls are parsed again here
    select * from {{ ref('stg_segment__events') }}
    where
        message_type in ('identify', 'track')
        and context_personas_computation_class is not null

),

identified_events as (

    select * from {{ ref('int_events_identified') }}

),

personas as (

    select
        event_id,
        message_id,
        message_type,
        occurred_at,
        received_at,
        traits,
        properties,
        lower(context_personas_computation_class) as computation_class,
        {{ segment_accounts.json_text('context', ['personas', 'computation_id']) }} as computation_id,
        {{ segment_accounts.json_text('context', ['personas', 'space_id']) }} as space_id,
        coalesce(
            {{ segment_accounts.json_text('context', ['personas', 'computation_key']) }},
            {{ segment_accounts.json_text('properties', ['audience_key']) }},
            {{ segment_accounts.json_text('properties', ['trait_key']) }}
        ) as computation_key
    from events

),

engage_calls as (

    select * from personas
    where computation_class in ('audience', 'journey_step', 'trait', 'computed_trait')

),

valued as (

    -- identify carries the value in traits, track in properties, both under the computation key
    select
        engage_calls.*,
        case
            when engage_calls.message_type = 'identify'
                then {{ segment_accounts.json_value_at_key('engage_calls.traits', 'engage_calls.computation_key') }}
            else {{ segment_accounts.json_value_at_key('engage_calls.properties', 'engage_calls.computation_key') }}
        end as computed_value,
        lower(case
            when engage_calls.message_type = 'identify'
                then {{ segment_accounts.json_text_at_key('engage_calls.traits', 'engage_calls.computation_key') }}
            else {{ segment_accounts.json_text_at_key('engage_calls.properties', 'engage_calls.computation_key') }}
        end) as value_text
    from engage_calls

),

final as (

    select
        valued.event_id,
        identified_events.contact_id,
        valued.computation_key,
        valued.computation_class,
        valued.computation_id,
        valued.space_id,
        -- fct_audience_history's documented column is `value`
        valued.computed_value as value,  -- noqa: RF04
        valued.occurred_at,
        valued.received_at,
        valued.message_id,
        -- audiences and journey steps are memberships: true/false or the strings "true"/"false"
        case
            when valued.computation_class in ('audience', 'journey_step')
                then case valued.value_text when 'true' then true when 'false' then false end
        end as is_member
    from valued
    inner join identified_events
        on valued.event_id = identified_events.event_id
    -- a call without a value at its key sets nothing; one without any usable identifier belongs to nobody
    where
        valued.computed_value is not null
        and identified_events.contact_id is not null

)

select * from final
