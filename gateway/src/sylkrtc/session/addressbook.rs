//! The handler's side of the address book: the store's items as the protocol's
//! `{contacts, groups, policies}`, and an update carried out (a group member added or removed
//! is a change to its group).

use protocol::{AccountEvent, AddressbookUpdate, Aor};
use serde_json::{Map, Value, json};

use crate::sylkrtc::connection::StoreAnswer;
use crate::sylkrtc::connection::addressbook::{MAX_ITEMS, Updated};

/// The account's address book.
pub(super) async fn fetch(store: &dyn store::Store, account: Aor) -> store::Result<StoreAnswer> {
    let entries = store.addressbook(&account.key()).await?;
    let mut book = json!({"contacts": [], "groups": [], "policies": []});
    for entry in entries {
        let list = match entry.kind.as_str() {
            "contact" => "contacts",
            "group" => "groups",
            "policy" => "policies",
            _ => continue,
        };
        // Stored by this gateway from a JSON object: one that does not read back is skipped.
        if let (Ok(item), Some(items)) = (
            serde_json::from_str::<Value>(&entry.item),
            book[list].as_array_mut(),
        ) {
            items.push(item);
        }
    }
    Ok(StoreAnswer::Addressbook {
        account,
        addressbook: book,
    })
}

/// Carries out an update; a failure the client can act on (a full address book, a group or
/// contact that is not there) is an answer, a store that fails an error.
pub(super) async fn update(
    store: &dyn store::Store,
    update: AddressbookUpdate,
) -> store::Result<StoreAnswer> {
    let key = update.account.key();
    let updated = if update.kind == "groupMember" {
        member(store, &key, &update).await?
    } else {
        let id = text(&update.data, "id");
        let item = Value::Object(update.data.clone());
        if update.action == "delete" {
            store.remove_entry(&key, &update.kind, &id).await?;
            Updated::Done(updated_event(&update.kind, &update.action, item))
        } else {
            let entry = store::Entry {
                kind: update.kind.clone(),
                id: id.clone(),
                item: item.to_string(),
            };
            match store.put_entry(&key, &entry, MAX_ITEMS).await? {
                store::Put::Stored => {
                    Updated::Done(updated_event(&update.kind, &update.action, item))
                }
                store::Put::Full => failed(
                    &update,
                    format!("the address book is full ({MAX_ITEMS} items)"),
                    id,
                ),
            }
        }
    };
    Ok(StoreAnswer::AddressbookUpdated {
        account: update.account,
        updated,
    })
}

/// A contact joins or leaves a group: the group, changed, is stored and told as updated.
async fn member(
    store: &dyn store::Store,
    key: &str,
    update: &AddressbookUpdate,
) -> store::Result<Updated> {
    let group_id = text(&update.data, "groupId");
    let contact_id = text(&update.data, "contactId");
    let entries = store.addressbook(key).await?;
    let find = |kind: &str, id: &str| {
        entries
            .iter()
            .find(|entry| entry.kind == kind && entry.id == id)
            .and_then(|entry| serde_json::from_str::<Value>(&entry.item).ok())
    };
    let Some(mut group) = find("group", &group_id) else {
        return Ok(failed(update, format!("no group {group_id}"), group_id));
    };
    let Some(members) = group.as_object_mut().map(|group| {
        group
            .entry("contacts")
            .or_insert_with(|| Value::Array(Vec::new()))
    }) else {
        return Ok(failed(update, format!("no group {group_id}"), group_id));
    };
    if !members.is_array() {
        *members = Value::Array(Vec::new());
    }
    let Some(list) = members.as_array_mut() else {
        return Ok(failed(update, format!("no group {group_id}"), group_id));
    };
    let is_member = |item: &Value| item.get("id").and_then(Value::as_str) == Some(&contact_id);
    if update.action == "delete" {
        list.retain(|item| !is_member(item));
    } else if !list.iter().any(is_member) {
        let Some(contact) = find("contact", &contact_id) else {
            return Ok(failed(
                update,
                format!("no contact {contact_id}"),
                contact_id,
            ));
        };
        list.push(contact);
    }
    let entry = store::Entry {
        kind: "group".to_owned(),
        id: group_id.clone(),
        item: group.to_string(),
    };
    Ok(match store.put_entry(key, &entry, MAX_ITEMS).await? {
        store::Put::Stored => Updated::Done(updated_event("group", "update", group)),
        store::Put::Full => failed(
            update,
            format!("the address book is full ({MAX_ITEMS} items)"),
            group_id,
        ),
    })
}

fn text(data: &Map<String, Value>, name: &str) -> String {
    data.get(name)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn updated_event(kind: &str, action: &str, item: Value) -> AccountEvent {
    AccountEvent::AddressbookUpdated {
        kind: kind.to_owned(),
        action: action.to_owned(),
        item,
    }
}

fn failed(update: &AddressbookUpdate, error: String, id: String) -> Updated {
    Updated::Failed(AccountEvent::AddressbookUpdateFailed {
        kind: update.kind.clone(),
        action: update.action.clone(),
        error,
        id,
    })
}
