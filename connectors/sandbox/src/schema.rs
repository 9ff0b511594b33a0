//! The objects and fields of the seeded Salesforce org, as `describe` reports them.

/// Salesforce field types the sandbox models, named as `describe` names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    Id,
    Reference,
    String,
    Textarea,
    Picklist,
    Boolean,
    Double,
    Currency,
    Int,
    Date,
    Datetime,
    Email,
    /// A compound address, read-only and built from its component fields.
    Address,
}

impl FieldType {
    /// Returns the `type` string `describe` uses.
    pub fn api_name(self) -> &'static str {
        match self {
            FieldType::Id => "id",
            FieldType::Reference => "reference",
            FieldType::String => "string",
            FieldType::Textarea => "textarea",
            FieldType::Picklist => "picklist",
            FieldType::Boolean => "boolean",
            FieldType::Double => "double",
            FieldType::Currency => "currency",
            FieldType::Int => "int",
            FieldType::Date => "date",
            FieldType::Datetime => "datetime",
            FieldType::Email => "email",
            FieldType::Address => "address",
        }
    }
}

/// One field of a sandbox object.
#[derive(Clone, Debug)]
pub struct FieldDef {
    pub name: &'static str,
    pub field_type: FieldType,
    pub updateable: bool,
    pub length: u32,
    /// Picklist values as (value, active).
    pub picklist: Vec<(&'static str, bool)>,
    pub restricted: bool,
    /// For references: the relationship name (`Owner` for `OwnerId`) and target objects.
    pub relationship: Option<(&'static str, Vec<&'static str>)>,
}

/// One sandbox object.
#[derive(Clone, Debug)]
pub struct ObjectDef {
    pub name: &'static str,
    /// The three-character id prefix Salesforce uses for the object.
    pub key_prefix: &'static str,
    pub fields: Vec<FieldDef>,
}

impl ObjectDef {
    pub fn field(&self, name: &str) -> Option<&FieldDef> {
        self.fields
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
    }

    /// Finds the reference field whose relationship name is `relationship` (case-insensitive).
    pub fn relationship(&self, relationship: &str) -> Option<&FieldDef> {
        self.fields.iter().find(|f| {
            f.relationship
                .as_ref()
                .is_some_and(|(name, _)| name.eq_ignore_ascii_case(relationship))
        })
    }
}

/// Component suffixes of an address compound field with their keys in its REST JSON value:
/// `BillingAddress` is built from `BillingStreet`, `BillingCity` and the others.
pub const ADDRESS_COMPONENTS: [(&str, &str); 5] = [
    ("Street", "street"),
    ("City", "city"),
    ("State", "state"),
    ("PostalCode", "postalCode"),
    ("Country", "country"),
];

/// Returns the prefix of an address compound field's name (`Billing` for `BillingAddress`).
pub fn address_prefix(compound: &FieldDef) -> Option<&'static str> {
    if compound.field_type != FieldType::Address {
        return None;
    }
    compound.name.strip_suffix("Address")
}

/// Returns the address compound field that `field` is a component of, if any.
pub fn compound_of<'a>(object: &'a ObjectDef, field: &str) -> Option<&'a FieldDef> {
    object.fields.iter().find(|compound| {
        address_prefix(compound).is_some_and(|prefix| {
            ADDRESS_COMPONENTS
                .iter()
                .any(|(suffix, _)| field.eq_ignore_ascii_case(&format!("{prefix}{suffix}")))
        })
    })
}

/// Values of the tier picklist that the score write-back uses.
pub const TIER_VALUES: [&str; 4] = ["A", "B", "C", "D"];

/// Buying-group roles of hospital contacts.
pub const BUYING_ROLES: [&str; 5] = [
    "Surgeon Champion",
    "Administrator",
    "Materials Manager",
    "Finance",
    "Patient Safety",
];

fn field(name: &'static str, field_type: FieldType, updateable: bool) -> FieldDef {
    let length = match field_type {
        FieldType::Id | FieldType::Reference => 18,
        FieldType::String | FieldType::Email | FieldType::Picklist => 255,
        FieldType::Textarea => 32768,
        _ => 0,
    };
    FieldDef {
        name,
        field_type,
        updateable,
        length,
        picklist: Vec::new(),
        restricted: false,
        relationship: None,
    }
}

fn editable(name: &'static str, field_type: FieldType) -> FieldDef {
    field(name, field_type, true)
}

/// Builds the read-only `Name` field of Contact and Lead, whose value the store derives from
/// `FirstName` and `LastName` as Salesforce does. Salesforce gives it a length of 121.
fn full_name() -> FieldDef {
    FieldDef {
        length: 121,
        ..field("Name", FieldType::String, false)
    }
}

fn reference(name: &'static str, relationship: &'static str, to: &[&'static str]) -> FieldDef {
    FieldDef {
        relationship: Some((relationship, to.to_vec())),
        ..field(name, FieldType::Reference, true)
    }
}

fn read_only_reference(
    name: &'static str,
    relationship: &'static str,
    to: &[&'static str],
) -> FieldDef {
    FieldDef {
        updateable: false,
        ..reference(name, relationship, to)
    }
}

fn picklist(name: &'static str, values: &[&'static str], restricted: bool) -> FieldDef {
    FieldDef {
        picklist: values.iter().map(|v| (*v, true)).collect(),
        restricted,
        ..field(name, FieldType::Picklist, true)
    }
}

/// Fields every object has: id, audit stamps and the deleted flag. None is updateable.
fn system_fields() -> Vec<FieldDef> {
    vec![
        field("Id", FieldType::Id, false),
        field("IsDeleted", FieldType::Boolean, false),
        field("CreatedDate", FieldType::Datetime, false),
        field("LastModifiedDate", FieldType::Datetime, false),
        field("SystemModstamp", FieldType::Datetime, false),
    ]
}

/// The score fields leadscore writes back, present on Account, Contact and Lead.
fn score_fields() -> Vec<FieldDef> {
    let mut tier = picklist("LS_Tier__c", &TIER_VALUES, true);
    // An old value that is no longer active, as real orgs accumulate them.
    tier.picklist.push(("Hot", false));
    let mut model = editable("LS_Model_Version__c", FieldType::String);
    model.length = 80;
    vec![
        editable("LS_Score__c", FieldType::Double),
        tier,
        editable("LS_Reasons__c", FieldType::Textarea),
        model,
        editable("LS_Scored_At__c", FieldType::Datetime),
        // The two fields reps flag a wrong score with. The picklist is unrestricted, as in an
        // org that created it through the API, so a value outside the list can be saved.
        picklist("LS_Feedback__c", &FEEDBACK_VALUES, false),
        editable("LS_Feedback_Comment__c", FieldType::String),
    ]
}

/// Values of the picklist reps flag a wrong score with.
pub const FEEDBACK_VALUES: [&str; 3] = ["Too high", "Too low", "Right"];

/// Returns every object of the seeded org.
pub fn objects() -> Vec<ObjectDef> {
    vec![
        user(),
        account(),
        contact(),
        lead(),
        opportunity(),
        contact_role(),
        task(),
        event(),
        currency_type(),
        permission_set(),
        field_permissions(),
        permission_set_assignment(),
    ]
}

/// Fields leadscore writes or reads on Account, Contact and Lead that a bare sandbox
/// ([`crate::SandboxOptions::bare`]) leaves out, so `check --fix` has them to create.
pub const LEADSCORE_FIELDS: [&str; 8] = [
    "LS_Score__c",
    "LS_Tier__c",
    "LS_Reasons__c",
    "LS_Model_Version__c",
    "LS_Scored_At__c",
    "LS_Feedback__c",
    "LS_Feedback_Comment__c",
    "LS_Sales_Ready__c",
];

/// Removes [`LEADSCORE_FIELDS`] from every object.
pub fn remove_leadscore_fields(objects: &mut [ObjectDef]) {
    for object in objects {
        object
            .fields
            .retain(|field| !LEADSCORE_FIELDS.contains(&field.name));
    }
}

/// A bundle of permissions that can be assigned to users, here for its field permissions.
fn permission_set() -> ObjectDef {
    let mut fields = system_fields();
    fields.extend([
        FieldDef {
            length: 80,
            ..editable("Name", FieldType::String)
        },
        editable("Label", FieldType::String),
        editable("Description", FieldType::Textarea),
    ]);
    ObjectDef {
        name: "PermissionSet",
        key_prefix: "0PS",
        fields,
    }
}

/// Read and edit access of one permission set to one field. `Field` is `Object.Field`.
fn field_permissions() -> ObjectDef {
    let mut fields = system_fields();
    fields.extend([
        reference("ParentId", "Parent", &["PermissionSet"]),
        editable("SobjectType", FieldType::String),
        editable("Field", FieldType::String),
        editable("PermissionsRead", FieldType::Boolean),
        editable("PermissionsEdit", FieldType::Boolean),
    ]);
    ObjectDef {
        name: "FieldPermissions",
        key_prefix: "01k",
        fields,
    }
}

/// The assignment of one permission set to one user.
fn permission_set_assignment() -> ObjectDef {
    let mut fields = system_fields();
    fields.extend([
        reference("PermissionSetId", "PermissionSet", &["PermissionSet"]),
        reference("AssigneeId", "Assignee", &["User"]),
    ]);
    ObjectDef {
        name: "PermissionSetAssignment",
        key_prefix: "0Pa",
        fields,
    }
}

/// Builds `MasterRecordId`: the survivor a merge deleted this record into, set only by a merge.
fn master_record_id(object: &'static str) -> FieldDef {
    FieldDef {
        relationship: Some(("MasterRecord", vec![object])),
        ..field("MasterRecordId", FieldType::Reference, false)
    }
}

/// Builds `CurrencyIsoCode`, present on records of a multi-currency org; null reads as the
/// corporate currency.
fn currency_iso_code() -> FieldDef {
    FieldDef {
        length: 3,
        ..editable("CurrencyIsoCode", FieldType::Picklist)
    }
}

/// The currencies of a multi-currency org. `ConversionRate` is the number of units of the
/// currency one unit of the corporate currency (`IsCorporate`, rate 1) buys.
fn currency_type() -> ObjectDef {
    let mut fields = system_fields();
    fields.extend([
        FieldDef {
            length: 3,
            ..editable("IsoCode", FieldType::String)
        },
        editable("ConversionRate", FieldType::Double),
        editable("IsCorporate", FieldType::Boolean),
        editable("IsActive", FieldType::Boolean),
    ]);
    ObjectDef {
        name: "CurrencyType",
        key_prefix: "01L",
        fields,
    }
}

fn user() -> ObjectDef {
    let mut fields = system_fields();
    fields.extend([
        editable("Name", FieldType::String),
        editable("Email", FieldType::Email),
        editable("IsActive", FieldType::Boolean),
        // Semicolon-separated two-letter state codes the rep covers.
        editable("Territory__c", FieldType::String),
    ]);
    ObjectDef {
        name: "User",
        key_prefix: "005",
        fields,
    }
}

fn account() -> ObjectDef {
    let mut fields = system_fields();
    fields.extend([
        editable("Name", FieldType::String),
        picklist("Type", &["Health System", "Hospital"], false),
        reference("ParentId", "Parent", &["Account"]),
        reference("OwnerId", "Owner", &["User"]),
        FieldDef {
            length: 255,
            ..editable("BillingStreet", FieldType::Textarea)
        },
        editable("BillingCity", FieldType::String),
        editable("BillingState", FieldType::String),
        editable("BillingPostalCode", FieldType::String),
        editable("BillingCountry", FieldType::String),
        field("BillingAddress", FieldType::Address, false),
        editable("CMS_Certification_Number__c", FieldType::String),
        editable("Hospital_Type__c", FieldType::String),
        editable("Hospital_Ownership__c", FieldType::String),
        editable("Emergency_Services__c", FieldType::Boolean),
        editable("CMS_Overall_Rating__c", FieldType::Double),
        editable("Hip_Knee_Discharges__c", FieldType::Double),
        editable("CABG_Discharges__c", FieldType::Double),
        editable("AMI_Discharges__c", FieldType::Double),
        editable("HF_Discharges__c", FieldType::Double),
        editable("PN_Discharges__c", FieldType::Double),
        editable("COPD_Discharges__c", FieldType::Double),
        editable("Incumbent_Competitor__c", FieldType::String),
        editable("AnnualRevenue", FieldType::Currency),
        currency_iso_code(),
        master_record_id("Account"),
    ]);
    fields.extend(score_fields());
    ObjectDef {
        name: "Account",
        key_prefix: "001",
        fields,
    }
}

fn contact() -> ObjectDef {
    let mut fields = system_fields();
    fields.extend([
        reference("AccountId", "Account", &["Account"]),
        reference("OwnerId", "Owner", &["User"]),
        editable("FirstName", FieldType::String),
        editable("LastName", FieldType::String),
        full_name(),
        editable("Title", FieldType::String),
        editable("Email", FieldType::Email),
        picklist("Buying_Role__c", &BUYING_ROLES, false),
        editable("Specialty__c", FieldType::String),
        master_record_id("Contact"),
    ]);
    fields.extend(score_fields());
    ObjectDef {
        name: "Contact",
        key_prefix: "003",
        fields,
    }
}

fn lead() -> ObjectDef {
    let mut fields = system_fields();
    fields.extend([
        reference("OwnerId", "Owner", &["User"]),
        editable("FirstName", FieldType::String),
        editable("LastName", FieldType::String),
        full_name(),
        editable("Company", FieldType::String),
        editable("Title", FieldType::String),
        editable("Email", FieldType::Email),
        editable("State", FieldType::String),
        picklist(
            "Status",
            &[
                "Open - Not Contacted",
                "Working - Contacted",
                "Closed - Converted",
                "Closed - Not Converted",
            ],
            false,
        ),
        field("IsConverted", FieldType::Boolean, false),
        editable("LeadSource", FieldType::String),
        picklist("Buying_Role__c", &BUYING_ROLES, false),
        // Lead conversion sets these; no API write can change them, as on IsConverted.
        field("ConvertedDate", FieldType::Date, false),
        read_only_reference("ConvertedAccountId", "ConvertedAccount", &["Account"]),
        read_only_reference("ConvertedContactId", "ConvertedContact", &["Contact"]),
        read_only_reference(
            "ConvertedOpportunityId",
            "ConvertedOpportunity",
            &["Opportunity"],
        ),
        master_record_id("Lead"),
    ]);
    fields.extend(score_fields());
    // Whether leadscore judges the lead ready for sales, which it writes on leads only.
    fields.push(editable("LS_Sales_Ready__c", FieldType::Boolean));
    ObjectDef {
        name: "Lead",
        key_prefix: "00Q",
        fields,
    }
}

fn opportunity() -> ObjectDef {
    let mut fields = system_fields();
    fields.extend([
        reference("AccountId", "Account", &["Account"]),
        reference("OwnerId", "Owner", &["User"]),
        editable("Name", FieldType::String),
        picklist(
            "StageName",
            &[
                "Prospecting",
                "Evaluation",
                "Value Analysis Committee",
                "Negotiation",
                "Closed Won",
                "Closed Lost",
            ],
            false,
        ),
        field("IsClosed", FieldType::Boolean, false),
        field("IsWon", FieldType::Boolean, false),
        editable("Amount", FieldType::Currency),
        currency_iso_code(),
        editable("CloseDate", FieldType::Date),
    ]);
    ObjectDef {
        name: "Opportunity",
        key_prefix: "006",
        fields,
    }
}

fn contact_role() -> ObjectDef {
    let mut fields = system_fields();
    fields.extend([
        reference("OpportunityId", "Opportunity", &["Opportunity"]),
        reference("ContactId", "Contact", &["Contact"]),
        picklist("Role", &BUYING_ROLES, false),
        editable("IsPrimary", FieldType::Boolean),
    ]);
    ObjectDef {
        name: "OpportunityContactRole",
        key_prefix: "00K",
        fields,
    }
}

fn activity_fields() -> Vec<FieldDef> {
    vec![
        reference("WhoId", "Who", &["Contact", "Lead"]),
        reference("WhatId", "What", &["Account", "Opportunity"]),
        reference("OwnerId", "Owner", &["User"]),
        editable("Subject", FieldType::String),
        picklist(
            "Type",
            &[
                "Webinar",
                "Content Download",
                "Email",
                "Call",
                "Demo",
                "Meeting",
            ],
            false,
        ),
    ]
}

fn task() -> ObjectDef {
    let mut fields = system_fields();
    fields.extend(activity_fields());
    fields.extend([
        editable("ActivityDate", FieldType::Date),
        picklist(
            "Status",
            &["Not Started", "In Progress", "Completed"],
            false,
        ),
        picklist("Priority", &["High", "Normal", "Low"], false),
        editable("Description", FieldType::Textarea),
    ]);
    ObjectDef {
        name: "Task",
        key_prefix: "00T",
        fields,
    }
}

fn event() -> ObjectDef {
    let mut fields = system_fields();
    fields.extend(activity_fields());
    fields.extend([
        editable("StartDateTime", FieldType::Datetime),
        editable("EndDateTime", FieldType::Datetime),
    ]);
    ObjectDef {
        name: "Event",
        key_prefix: "00U",
        fields,
    }
}
