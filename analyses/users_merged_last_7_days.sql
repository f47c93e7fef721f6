{#-
    Users merged in the last 7 days (up to now, or var segment_accounts__account_activity_as_of): each user id
    that an alias joined to another user's contact, when and by which message, with the contact it is part of now.
-#}

with

identity_merges as (

    select * from {{ ref('fct_identity_merges') }}

),

contacts as (

    select * from {{ ref('dim_contacts') }}

),

recent_user_merges as (

    select * from identity_merges
    where
        identifier_type = 'user_id'
        and merged_at > {{ dbt.dateadd('day', -7, segment_accounts.activity_as_of()) }}
        and merged_at <= {{ segment_accounts.activity_as_of() }}

),

final as (

    select
        recent_user_merges.merged_at,
        recent_user_merges.identifier as merged_user_id,
        recent_user_merges.merged_into_user_id,
        contacts.user_id as contact_user_id_now,
        contacts.email,
        recent_user_merges.merged_by_call,
        recent_user_merges.merge_message_id,
        recent_user_merges.connection_name
    from recent_user_merges
    inner join contacts
        on recent_user_merges.contact_id = contacts.contact_id

)

select * from final
order by merged_at desc, merged_user_id asc
