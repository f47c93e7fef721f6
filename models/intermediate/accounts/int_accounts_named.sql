{#-
    Every account seen (assigned to a contact or named by an event), with its name and how it was found.
    Name: the latest group call's traits.name, else the name trait of the traits rule, else the domain.
    account_id_source: group when the id is a groupId anywhere, else traits, else email_domain.
-#}

with

groups as (

    select * from {{ ref('stg_segment__groups') }}

),

events as (

    select * from {{ ref('stg_segment__events') }}

),

contact_accounts as (

    select * from {{ ref('int_contact_accounts_resolved') }}

),

trait_accounts as (

    select * from {{ ref('int_trait_accounts_assigned') }}

),

group_ids as (

    select {{ segment_accounts.clean_identifier('group_id') }} as account_id
    from groups
    union
    select {{ segment_accounts.clean_identifier('context_group_id') }} as account_id
    from events

),

account_ids as (

    -- rule "event attribution": an event's account is its own groupId or its contact's account, so these are
    -- every account an event can name
    select account_id from contact_accounts
    where account_id is not null
    union
    select account_id from group_ids
    where account_id is not null

),

group_calls_by_recency as (

    select
        {{ segment_accounts.clean_identifier('group_id') }} as account_id,
        nullif(trim(group_name), '') as group_name,
        traits,
        row_number() over (
            partition by {{ segment_accounts.clean_identifier('group_id') }}
            order by occurred_at desc, received_at desc, message_id desc
        ) as recency_rank
    from groups
    where {{ segment_accounts.json_is_object('traits') }}

),

latest_group_traits as (

    select
        account_id,
        traits
    from group_calls_by_recency
    where recency_rank = 1

),

group_names_by_recency as (

    select
        account_id,
        group_name,
        row_number() over (partition by account_id order by recency_rank) as name_rank
    from group_calls_by_recency
    where group_name is not null

),

trait_names_by_recency as (

    select
        account_id,
        account_name,
        row_number() over (
            partition by account_id
            order by occurred_at desc, received_at desc, message_id desc
        ) as name_rank
    from trait_accounts
    where account_name is not null

),

account_id_sources as (

    select
        account_ids.account_id,
        case
            when group_ids.account_id is not null then 'group'
            when account_ids.account_id in (select trait_accounts.account_id from trait_accounts) then 'traits'
            else 'email_domain'
        end as account_id_source
    from account_ids
    left join group_ids
        on account_ids.account_id = group_ids.account_id

),

final as (

    select
        account_id_sources.account_id,
        account_id_sources.account_id_source,
        latest_group_traits.traits,
        coalesce(
            group_names_by_recency.group_name,
            trait_names_by_recency.account_name,
            case when account_id_sources.account_id_source = 'email_domain' then account_id_sources.account_id end
        ) as account_name
    from account_id_sources
    left join group_names_by_recency
        on
            account_id_sources.account_id = group_names_by_recency.account_id
            and group_names_by_recency.name_rank = 1
    left join trait_names_by_recency
        on
            account_id_sources.account_id = trait_names_by_recency.account_id
            and trait_names_by_recency.name_rank = 1
    left join latest_group_traits
        on account_id_sources.account_id = latest_group_traits.account_id

)

select * from final
