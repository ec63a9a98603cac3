-- What the dashboard reads: a total per funding year, metric and dimension (a category, a
-- budget line, a service type, a number of days, a due date), as it stands now.
CREATE TABLE kpi_totals (
    year      text   NOT NULL,
    metric    text   NOT NULL,
    dimension text   NOT NULL,
    value     bigint NOT NULL,
    PRIMARY KEY (year, metric, dimension)
);

-- Each total's value after every position that changed it: `as_of` reads the last row at or
-- before a position, one index probe per total.
CREATE TABLE kpi_totals_history (
    year      text   NOT NULL,
    metric    text   NOT NULL,
    dimension text   NOT NULL,
    position  bigint NOT NULL,
    value     bigint NOT NULL,
    PRIMARY KEY (year, metric, dimension, position)
);

-- Each total split by the business date its facts take effect on: the total "as it stood on"
-- a date is the sum of its parts dated on or before it.
CREATE TABLE kpi_dated_totals (
    year         text   NOT NULL,
    metric       text   NOT NULL,
    dimension    text   NOT NULL,
    effective_on date   NOT NULL,
    value        bigint NOT NULL,
    PRIMARY KEY (year, metric, dimension, effective_on)
);

-- Each dated part's value after every position that changed it (both clocks at once).
CREATE TABLE kpi_dated_history (
    year         text   NOT NULL,
    metric       text   NOT NULL,
    dimension    text   NOT NULL,
    effective_on date   NOT NULL,
    position     bigint NOT NULL,
    value        bigint NOT NULL,
    PRIMARY KEY (year, metric, dimension, effective_on, position)
);

-- What the fold keeps per application: the facts the dashboard reads, with their business
-- dates, in log order, and the units used by the date they count from.
CREATE TABLE kpi_applications (
    application_id text  PRIMARY KEY,
    state          jsonb NOT NULL
);

-- Each usage charge, for its reversal: the year, date and subsidy it added.
CREATE TABLE kpi_charges (
    application_id text    NOT NULL,
    usage_id       text    NOT NULL,
    financial_year text    NOT NULL,
    charged_on     date    NOT NULL,
    subsidy_cents  bigint  NOT NULL,
    reversed       boolean NOT NULL DEFAULT false,
    PRIMARY KEY (application_id, usage_id)
);

-- The latest figures of a funding year's budget line and of a service's month, by the business
-- date each took effect on.
CREATE TABLE kpi_budget_lines (
    year    text  NOT NULL,
    line    text  NOT NULL,
    figures jsonb NOT NULL,
    PRIMARY KEY (year, line)
);

CREATE TABLE kpi_capacity_months (
    service_type text  NOT NULL,
    period       text  NOT NULL,
    figures      jsonb NOT NULL,
    PRIMARY KEY (service_type, period)
);
