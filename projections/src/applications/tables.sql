CREATE TABLE applications_view (
    application_id            text    PRIMARY KEY,
    status                    text    NOT NULL,
    batch_id                  text    NOT NULL,
    organisation              text    NOT NULL,
    category                  text    NOT NULL,
    sub_type                  text    NOT NULL,
    project_title             text    NOT NULL,
    develops_ai_models        boolean NOT NULL,
    mainland_or_overseas_team boolean NOT NULL,
    team_size                 integer NOT NULL,
    talents                   integer NOT NULL,
    requested_rate_bps        integer NOT NULL,
    submitted_on              date    NOT NULL,
    assessed_by               text,
    total_score               integer,
    decided_on                date,
    approved_rate_bps         integer,
    ceiling_cents             bigint,
    disbursed_cents           bigint  NOT NULL DEFAULT 0,
    units_allocated           bigint  NOT NULL DEFAULT 0,
    units_used                bigint  NOT NULL DEFAULT 0,
    project_start             date,
    project_end               date,
    report_due_dates          date[]  NOT NULL DEFAULT '{}',
    reports_submitted         date[]  NOT NULL DEFAULT '{}',
    next_report_due           date,
    last_position             bigint  NOT NULL,
    -- What free text is matched against: the title and the applicant, lower-cased.
    search_text               text    GENERATED ALWAYS AS (lower(project_title || ' ' || organisation)) STORED
);

CREATE TABLE budget_view (
    year             text   NOT NULL,
    line             text   NOT NULL,
    received_cents   bigint NOT NULL DEFAULT 0,
    committed_cents  bigint NOT NULL DEFAULT 0,
    disbursed_cents  bigint NOT NULL DEFAULT 0,
    redirected_cents bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (year, line)
);

CREATE TABLE capacity_view (
    service_type text   NOT NULL,
    period       text   NOT NULL,
    capacity     bigint NOT NULL DEFAULT 0,
    allocated    bigint NOT NULL DEFAULT 0,
    redeployed   bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (service_type, period)
);

CREATE TABLE usage_view (
    application_id      text    NOT NULL,
    usage_id            text    NOT NULL,
    service_type        text    NOT NULL,
    period              text    NOT NULL,
    financial_year      text    NOT NULL,
    units               bigint  NOT NULL,
    rate_per_unit_cents bigint  NOT NULL,
    gross_cents         bigint  NOT NULL,
    subsidy_rate_bps    integer NOT NULL,
    subsidy_cents       bigint  NOT NULL,
    reversed            boolean NOT NULL DEFAULT false,
    reversal_reason     text,
    charged_position    bigint  NOT NULL,
    -- The charge's business date (its usage month's first day) and when the log recorded it.
    charged_on          date        NOT NULL,
    recorded_at         timestamptz NOT NULL,
    PRIMARY KEY (application_id, usage_id)
);

CREATE TABLE batches_view (
    batch_id       text    PRIMARY KEY,
    deadline       date    NOT NULL,
    committee_date date    NOT NULL,
    closed         boolean NOT NULL DEFAULT false
);
