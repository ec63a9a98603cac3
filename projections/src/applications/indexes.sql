CREATE INDEX applications_view_by_status ON applications_view (status, submitted_on);
CREATE INDEX applications_view_by_batch ON applications_view (batch_id, status, submitted_on);
CREATE INDEX applications_view_by_category ON applications_view (category, submitted_on);
CREATE INDEX usage_view_by_year ON usage_view (financial_year, period);
