{#-
    The people of one account with every identifier they were seen with. Choose the account with
    `dbt compile --vars '{account_id: acme}'` (or edit the default below).
-#}
{%- set account_id = var('account_id', 'acme') | replace("'", "''") %}

with

contacts as (

    select * from {{ ref('dim_contacts') }}

),

identifiers as (

    select * from {{ ref('dim_contact_identifiers') }}

),

account_contacts as (

    select * from contacts
    where account_id = '{{ account_id }}'

),

contact_identifiers as (

    select
        identifiers.contact_id,
        {{ dbt.listagg(
            measure=dbt.concat(['identifiers.identifier_type', "':'", 'identifiers.identifier']),
            delimiter_text="', '",
            order_by_clause='order by identifiers.identifier_type, identifiers.identifier'
        ) }} as identifiers
    from identifiers
    inner join account_contacts
        on identifiers.contact_id = account_contacts.contact_id
    group by identifiers.contact_id

),

final as (

    select
        account_contacts.contact_id,
        account_contacts.user_id,
        account_contacts.email,
        account_contacts.account_assigned_by,
        contact_identifiers.identifiers,
        account_contacts.event_count,
        account_contacts.last_seen_at
    from account_contacts
    left join contact_identifiers
        on account_contacts.contact_id = contact_identifiers.contact_id

)

select * from final
order by last_seen_at desc, contact_id asc
