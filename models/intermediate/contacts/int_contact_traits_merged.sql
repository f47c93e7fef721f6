{#- A contact's traits: the latest value of each trait across its identify calls. -#}

with

identifies as (

    select * from {{ ref('stg_segment__identifies') }}

),

identifies_with_traits as (

    -- jsonb_each fails on anything but an object, so non-object traits are left out before the lateral call
    select
        event_id,
        traits
    from identifies
    where {{ segment_accounts.json_is_object('traits') }}

),

events_identified as (

    select * from {{ ref('int_events_identified') }}

),

trait_values as (

    select
        events_identified.contact_id,
        trait.key as trait_name,
        trait.value as trait_value,
        row_number() over (
            partition by events_identified.contact_id, trait.key
            order by
                events_identified.occurred_at desc,
                events_identified.received_at desc,
                events_identified.message_id desc
        ) as recency_rank
    from identifies_with_traits
    inner join events_identified
        on identifies_with_traits.event_id = events_identified.event_id
    cross join {{ segment_accounts.json_each('identifies_with_traits.traits') }} as trait
    where events_identified.contact_id is not null

),

final as (

    select
        contact_id,
        {{ segment_accounts.json_object_agg('trait_name', 'trait_value') }} as traits
    from trait_values
    where recency_rank = 1
    group by contact_id

)

select * from final
