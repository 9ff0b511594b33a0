//! Word lists for invented people, health systems, competitors, products and activity subjects.
//!
//! All names of systems, competitors and products are invented. Person names are common given
//! and family names combined at random.

pub(crate) const FIRST_NAMES: [&str; 64] = [
    "Aaron", "Abigail", "Adrian", "Aisha", "Alan", "Alicia", "Amir", "Ana", "Andre", "Angela",
    "Ben", "Bianca", "Brian", "Carla", "Carlos", "Chen", "Chloe", "Daniel", "Dana", "David",
    "Diego", "Elena", "Eric", "Erin", "Farah", "Felix", "Grace", "Hannah", "Hector", "Ian",
    "Imani", "Isaac", "Jamal", "Janet", "Jason", "Julia", "Kevin", "Kim", "Laura", "Leon", "Lina",
    "Marcus", "Maria", "Mei", "Michael", "Nadia", "Nathan", "Nina", "Omar", "Paula", "Priya",
    "Rachel", "Raj", "Rosa", "Samuel", "Sara", "Sean", "Sofia", "Tariq", "Teresa", "Victor",
    "Wendy", "Yusuf", "Zoe",
];

pub(crate) const LAST_NAMES: [&str; 64] = [
    "Adams", "Ahmed", "Alvarez", "Baker", "Bennett", "Brooks", "Campbell", "Carter", "Chen",
    "Clark", "Collins", "Cruz", "Davis", "Diaz", "Edwards", "Evans", "Fischer", "Flores", "Foster",
    "Garcia", "Gomez", "Gupta", "Hall", "Harris", "Hughes", "Ibrahim", "Jackson", "James",
    "Jensen", "Johnson", "Kelly", "Khan", "Kim", "Lee", "Lewis", "Lopez", "Martin", "Mendez",
    "Miller", "Moore", "Murphy", "Nguyen", "Novak", "Okafor", "Olsen", "Patel", "Perez", "Price",
    "Reed", "Reyes", "Rivera", "Roberts", "Sanchez", "Shah", "Silva", "Smith", "Sullivan",
    "Taylor", "Thomas", "Torres", "Turner", "Walker", "Wang", "Young",
];

pub(crate) const SYSTEM_PREFIXES: [&str; 8] = [
    "",
    "Greater ",
    "Northern ",
    "Southern ",
    "Eastern ",
    "Western ",
    "Central ",
    "Upper ",
];

pub(crate) const SYSTEM_WORDS: [&str; 48] = [
    "Aspen",
    "Bayview",
    "Bluestem",
    "Bridgewater",
    "Brookline",
    "Canyon",
    "Cedar Valley",
    "Clearwater",
    "Cornerstone",
    "Crescent",
    "Eastgate",
    "Evergreen",
    "Fairhaven",
    "Foothills",
    "Granite",
    "Harborview",
    "Hearthstone",
    "Heartland",
    "High Plains",
    "Ironwood",
    "Juniper",
    "Keystone",
    "Lakeshore",
    "Laurel",
    "Lighthouse",
    "Magnolia",
    "Maple Ridge",
    "Meadowbrook",
    "Meridian",
    "Mesa",
    "Northstar",
    "Oak Hollow",
    "Pinecrest",
    "Prairie",
    "Red Rock",
    "Ridgeline",
    "Riverbend",
    "Sagebrush",
    "Silver Lake",
    "Stonebridge",
    "Summit",
    "Sunrise",
    "Tidewater",
    "Timberline",
    "Twin Rivers",
    "Valley Crest",
    "Westbrook",
    "Willow Creek",
];

pub(crate) const SYSTEM_SUFFIXES: [&str; 8] = [
    "Health",
    "Health System",
    "Healthcare",
    "Health Partners",
    "Medical Alliance",
    "Regional Health",
    "Health Network",
    "Care Collaborative",
];

/// Invented device makers that may already supply a hospital.
pub(crate) const COMPETITORS: [&str; 5] = [
    "Halvard Medical",
    "Kestrel Orthopedics",
    "Valence Cardio Systems",
    "Northbridge Surgical",
    "Orison Devices",
];

/// A product line of the simulated company: name, amount range in dollars, and the clinical
/// area that decides which hospitals buy it.
pub(crate) struct Product {
    pub name: &'static str,
    pub min_amount: f64,
    pub max_amount: f64,
    pub area: Area,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Area {
    Orthopedic,
    Cardiac,
    General,
}

pub(crate) const PRODUCTS: [Product; 6] = [
    Product {
        name: "Robotic Knee Platform",
        min_amount: 450_000.0,
        max_amount: 1_200_000.0,
        area: Area::Orthopedic,
    },
    Product {
        name: "Hip and Knee Implant Program",
        min_amount: 150_000.0,
        max_amount: 600_000.0,
        area: Area::Orthopedic,
    },
    Product {
        name: "Cardiac Surgery Stabilizers",
        min_amount: 80_000.0,
        max_amount: 250_000.0,
        area: Area::Cardiac,
    },
    Product {
        name: "Cardiac Monitoring Fleet",
        min_amount: 100_000.0,
        max_amount: 400_000.0,
        area: Area::Cardiac,
    },
    Product {
        name: "Surgical Site Infection Bundle",
        min_amount: 40_000.0,
        max_amount: 150_000.0,
        area: Area::General,
    },
    Product {
        name: "Sterile Processing Upgrade",
        min_amount: 60_000.0,
        max_amount: 200_000.0,
        area: Area::General,
    },
];

/// Surgical specialties of surgeon champions, with draw weights.
pub(crate) const SURGEON_SPECIALTIES: [(&str, &str, f64); 5] = [
    ("Orthopedic Surgery", "Orthopedic Surgeon", 0.4),
    ("Cardiothoracic Surgery", "Cardiothoracic Surgeon", 0.2),
    (
        "Interventional Cardiology",
        "Interventional Cardiologist",
        0.2,
    ),
    ("General Surgery", "General Surgeon", 0.1),
    ("Vascular Surgery", "Vascular Surgeon", 0.1),
];

/// Titles and optional specialties of the non-surgeon buying roles, in the order of
/// `BUYING_ROLES` after "Surgeon Champion".
pub(crate) const ADMINISTRATOR_TITLES: [&str; 4] = [
    "Chief Operating Officer",
    "VP of Surgical Services",
    "Director of Perioperative Services",
    "Service Line Administrator",
];
pub(crate) const MATERIALS_TITLES: [&str; 3] = [
    "Materials Manager",
    "Director of Supply Chain",
    "Value Analysis Coordinator",
];
pub(crate) const FINANCE_TITLES: [&str; 3] = [
    "Chief Financial Officer",
    "Director of Finance",
    "Senior Financial Analyst",
];
pub(crate) const SAFETY_TITLES: [(&str, &str); 3] = [
    ("Patient Safety Officer", "Quality and Patient Safety"),
    ("Director of Quality", "Quality and Patient Safety"),
    ("Infection Preventionist", "Infection Prevention"),
];

pub(crate) const LEAD_COMPANY_KINDS: [&str; 5] = [
    "Orthopedic Surgery Center",
    "Heart and Vascular Clinic",
    "Ambulatory Surgery Center",
    "Spine Institute",
    "Joint Replacement Center",
];

/// `LeadSource` values of the demo org's inbound marketing leads.
pub(crate) const LEAD_SOURCES: [&str; 5] = [
    "Webinar",
    "Content Download",
    "Conference List",
    "Web Form",
    "Purchased List",
];

/// Lead activity subjects by activity type. None mentions a conversion.
pub(crate) fn lead_subjects(activity_type: &str) -> &'static [&'static str] {
    match activity_type {
        "Webinar" => &[
            "Attended webinar: Same-day joint replacement pathways",
            "Attended webinar: Reducing surgical site infections",
            "Attended webinar: Cardiac surgery outcomes benchmarking",
            "Attended webinar: Value analysis for capital equipment",
        ],
        "Email" => &[
            "Email reply: Asked for pricing",
            "Email reply: Requested clinical evidence",
            "Email reply: Forwarded to a colleague",
            "Email reply: Asked for a case study",
        ],
        "Call" => &[
            "Call: Lead qualification",
            "Call: Left voicemail",
            "Call: Discovery with new lead",
        ],
        "Meeting" => &[
            "Meeting: Introductory call with sales rep",
            "Meeting: Virtual product overview",
        ],
        other => subjects(other),
    }
}

/// Subjects of the demo requests that web forms log as tasks.
pub(crate) const DEMO_REQUEST_SUBJECTS: [&str; 3] = [
    "Demo request: Robotic knee platform",
    "Demo request: Cardiac monitoring",
    "Demo request: Infection prevention bundle",
];

/// Subjects of the general inquiries that web forms log as tasks.
pub(crate) const WEB_INQUIRY_SUBJECTS: [&str; 2] = [
    "Web form inquiry: Product information",
    "Web form inquiry: Request a quote",
];

/// Activity subjects by activity type. None mentions a deal's outcome.
pub(crate) fn subjects(activity_type: &str) -> &'static [&'static str] {
    match activity_type {
        "Webinar" => &[
            "Webinar: Same-day joint replacement pathways",
            "Webinar: Reducing surgical site infections",
            "Webinar: Cardiac surgery outcomes benchmarking",
            "Webinar: Value analysis for capital equipment",
        ],
        "Content Download" => &[
            "Downloaded: Robotic knee outcomes white paper",
            "Downloaded: Infection prevention checklist",
            "Downloaded: Cardiac monitoring total cost of ownership guide",
            "Downloaded: Sterile processing efficiency case study",
        ],
        "Email" => &[
            "Email: Product information",
            "Email: Clinical evidence summary",
            "Email: Follow-up on questions",
            "Email: Pricing overview",
        ],
        "Call" => &[
            "Call: Introduction",
            "Call: Needs discovery",
            "Call: Follow-up",
            "Call: Reference check",
        ],
        "Demo" => &[
            "Demo: Robotic knee platform",
            "Demo: Cardiac monitoring",
            "Demo: Infection prevention bundle",
            "Demo: Sterile processing workflow",
        ],
        _ => &[
            "Meeting: Service line review",
            "Meeting: Value analysis committee preparation",
            "Meeting: Clinical workflow walkthrough",
            "Meeting: Capital planning",
        ],
    }
}
