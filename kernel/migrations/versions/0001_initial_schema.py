"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-25 15:20:41.186421
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("object_type", sa.String(length=32), nullable=False),
        sa.Column("object_id", sa.String(length=64), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
        sa.UniqueConstraint("hash", name=op.f("uq_audit_events_hash")),
        sa.UniqueConstraint("prev_hash", name=op.f("uq_audit_events_prev_hash")),
    )
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_events_action"), ["action"], unique=False)

    op.create_table(
        "campaigns",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "draft",
                "ready",
                "running",
                "paused",
                "completed",
                "exported",
                "wiped",
                name="campaignstatus",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column(
            "disclosure_level",
            sa.Enum(
                "notice",
                "summary",
                "detail",
                name="disclosurelevel",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("script_name", sa.String(length=100), nullable=False),
        sa.Column("plan", sa.JSON(), nullable=False),
        sa.Column("holdout_share", sa.Float(), nullable=False),
        sa.Column("holdout_seed", sa.Integer(), nullable=True),
        sa.Column("holdout_assigned_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("as_of", sa.Date(), nullable=True),
        sa.Column("wrapped_data_key", sa.LargeBinary(), nullable=True),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("exported_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("wiped_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaigns")),
    )
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_campaigns_status"), ["status"], unique=False)

    op.create_table(
        "daily_aggregates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("dimension", sa.String(length=64), nullable=False),
        sa.Column("metric", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_daily_aggregates")),
    )
    with op.batch_alter_table("daily_aggregates", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_daily_aggregates_campaign_id"), ["campaign_id"], unique=False
        )
        batch_op.create_index(
            "ix_daily_aggregates_key", ["day", "campaign_id", "dimension", "metric"], unique=True
        )

    op.create_table(
        "do_not_call",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("number_digest", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_do_not_call")),
        sa.UniqueConstraint("number_digest", name=op.f("uq_do_not_call_number_digest")),
    )
    op.create_table(
        "erasure_certificates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("issued_by", sa.String(length=64), nullable=False),
        sa.Column("forced_reason", sa.Text(), nullable=True),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("body_sha256", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_erasure_certificates")),
    )
    with op.batch_alter_table("erasure_certificates", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_erasure_certificates_campaign_id"), ["campaign_id"], unique=False
        )

    op.create_table(
        "exclusion_lists",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
        sa.Column("loaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("entry_count", sa.Integer(), nullable=False),
        sa.Column("file_sha256", sa.String(length=64), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_exclusion_lists")),
    )
    with op.batch_alter_table("exclusion_lists", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_exclusion_lists_active"), ["active"], unique=False)

    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("display_name", sa.String(length=100), nullable=False),
        sa.Column(
            "role",
            sa.Enum(
                "operator",
                "staff",
                "supervisor",
                "admin",
                name="role",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("password_hash", sa.String(length=200), nullable=False),
        sa.Column("sealed_totp_secret", sa.LargeBinary(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("failed_logins", sa.Integer(), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("username", name=op.f("uq_users_username")),
    )
    op.create_table(
        "exclusion_entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("list_id", sa.Integer(), nullable=False),
        sa.Column("ref_digest", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["list_id"],
            ["exclusion_lists.id"],
            name=op.f("fk_exclusion_entries_list_id_exclusion_lists"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_exclusion_entries")),
    )
    with op.batch_alter_table("exclusion_entries", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_exclusion_entries_list_id"), ["list_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_exclusion_entries_ref_digest"), ["ref_digest"], unique=False
        )

    op.create_table(
        "import_batches",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=True),
        sa.Column("source_kind", sa.String(length=16), nullable=False),
        sa.Column("layout", sa.String(length=64), nullable=False),
        sa.Column("file_sha256", sa.String(length=64), nullable=False),
        sa.Column("rows_read", sa.Integer(), nullable=False),
        sa.Column("rows_loaded", sa.Integer(), nullable=False),
        sa.Column("rows_rejected", sa.Integer(), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.Column("imported_by", sa.String(length=64), nullable=False),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"], ["campaigns.id"], name=op.f("fk_import_batches_campaign_id_campaigns")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_import_batches")),
        sa.UniqueConstraint("file_sha256", name=op.f("uq_import_batches_file_sha256")),
    )
    with op.batch_alter_table("import_batches", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_import_batches_campaign_id"), ["campaign_id"], unique=False
        )

    op.create_table(
        "results_exports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("row_count", sa.Integer(), nullable=False),
        sa.Column("file_sha256", sa.String(length=64), nullable=False),
        sa.Column("exported_by", sa.String(length=64), nullable=False),
        sa.Column("exported_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"], ["campaigns.id"], name=op.f("fk_results_exports_campaign_id_campaigns")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_results_exports")),
    )
    with op.batch_alter_table("results_exports", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_results_exports_campaign_id"), ["campaign_id"], unique=False
        )

    op.create_table(
        "persons",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("import_id", sa.Integer(), nullable=True),
        sa.Column("ref_digest", sa.String(length=64), nullable=False),
        sa.Column("sealed_pii", sa.LargeBinary(), nullable=False),
        sa.Column("has_kana", sa.Boolean(), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column(
            "channel",
            sa.Enum(
                "ivr",
                "sms",
                "operator",
                "letter",
                name="channel",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column(
            "status",
            sa.Enum(
                "active",
                "holdout",
                "paid",
                "done",
                "stopped",
                name="targetstatus",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("unpaid_total_yen", sa.Integer(), nullable=False),
        sa.Column("paid_on", sa.Date(), nullable=True),
        sa.Column("paid_yen", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"], ["campaigns.id"], name=op.f("fk_persons_campaign_id_campaigns")
        ),
        sa.ForeignKeyConstraint(
            ["import_id"], ["import_batches.id"], name=op.f("fk_persons_import_id_import_batches")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_persons")),
    )
    with op.batch_alter_table("persons", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_persons_campaign_id"), ["campaign_id"], unique=False)
        batch_op.create_index("ix_persons_campaign_ref", ["campaign_id", "ref_digest"], unique=True)
        batch_op.create_index(batch_op.f("ix_persons_status"), ["status"], unique=False)

    op.create_table(
        "phones",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("sealed_number", sa.LargeBinary(), nullable=False),
        sa.Column("number_digest", sa.String(length=64), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "MOBILE",
                "FIXED_LINE",
                "VOIP",
                "TOLL_FREE",
                "OTHER",
                name="phonekind",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("verified_on", sa.Date(), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "usable",
                "wrong_number",
                "opted_out",
                name="phonestatus",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("shared_household", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"], ["campaigns.id"], name=op.f("fk_phones_campaign_id_campaigns")
        ),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["persons.id"],
            name=op.f("fk_phones_person_id_persons"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_phones")),
    )
    with op.batch_alter_table("phones", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_phones_campaign_id"), ["campaign_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_phones_number_digest"), ["number_digest"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_phones_person_id"), ["person_id"], unique=False)

    op.create_table(
        "receivables",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("department", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("fiscal_year", sa.Integer(), nullable=False),
        sa.Column("period", sa.String(length=16), nullable=False),
        sa.Column("sealed_notice_number", sa.LargeBinary(), nullable=True),
        sa.Column("due_date", sa.Date(), nullable=False),
        sa.Column("unpaid_yen", sa.Integer(), nullable=False),
        sa.Column("late_fee_yen", sa.Integer(), nullable=False),
        sa.Column("demand_date", sa.Date(), nullable=True),
        sa.Column("installment", sa.String(length=16), nullable=True),
        sa.Column("account_transfer", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"], ["campaigns.id"], name=op.f("fk_receivables_campaign_id_campaigns")
        ),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["persons.id"],
            name=op.f("fk_receivables_person_id_persons"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_receivables")),
    )
    with op.batch_alter_table("receivables", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_receivables_campaign_id"), ["campaign_id"], unique=False
        )
        batch_op.create_index(
            "ix_receivables_item", ["person_id", "kind", "fiscal_year", "period"], unique=True
        )

    op.create_table(
        "attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=True),
        sa.Column("phone_id", sa.Integer(), nullable=True),
        sa.Column(
            "channel",
            sa.Enum(
                "ivr",
                "sms",
                "operator",
                "letter",
                name="channel",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("sequence_no", sa.Integer(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "scheduled",
                "claimed",
                "in_progress",
                "completed",
                "refused",
                "cancelled",
                name="attemptstatus",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("scheduled_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("idempotency_key", sa.String(length=64), nullable=False),
        sa.Column("claimed_by", sa.String(length=64), nullable=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("carrier", sa.String(length=16), nullable=True),
        sa.Column("carrier_ref", sa.String(length=64), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration_seconds", sa.Integer(), nullable=True),
        sa.Column("outcome_code", sa.String(length=32), nullable=True),
        sa.Column("carrier_result", sa.String(length=64), nullable=True),
        sa.Column("refusal_reason", sa.String(length=32), nullable=True),
        sa.Column("dispatch_errors", sa.Integer(), nullable=False),
        sa.Column("follow_up_planned", sa.Boolean(), nullable=False),
        sa.Column("operator_id", sa.Integer(), nullable=True),
        sa.Column("promise_date", sa.Date(), nullable=True),
        sa.Column("promise_amount_yen", sa.Integer(), nullable=True),
        sa.Column("sealed_notes", sa.LargeBinary(), nullable=True),
        sa.Column("identity_confirmed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("inbound", sa.Boolean(), nullable=False),
        sa.Column("payment_method", sa.String(length=32), nullable=True),
        sa.Column("slip_reissue", sa.Boolean(), nullable=False),
        sa.Column("transfer_recommended", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"], ["campaigns.id"], name=op.f("fk_attempts_campaign_id_campaigns")
        ),
        sa.ForeignKeyConstraint(
            ["operator_id"], ["users.id"], name=op.f("fk_attempts_operator_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["persons.id"],
            name=op.f("fk_attempts_person_id_persons"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["phone_id"],
            ["phones.id"],
            name=op.f("fk_attempts_phone_id_phones"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_attempts")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_attempts_idempotency_key")),
    )
    with op.batch_alter_table("attempts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_attempts_campaign_id"), ["campaign_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_attempts_carrier_ref"), ["carrier_ref"], unique=False)
        batch_op.create_index("ix_attempts_due", ["status", "scheduled_at"], unique=False)
        batch_op.create_index(
            "ix_attempts_follow_up", ["follow_up_planned", "status"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_attempts_outcome_code"), ["outcome_code"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_attempts_person_id"), ["person_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_attempts_phone_id"), ["phone_id"], unique=False)

    op.create_table(
        "callback_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=True),
        sa.Column("attempt_id", sa.Integer(), nullable=True),
        sa.Column("time_band", sa.String(length=16), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "pending",
                "claimed",
                "done",
                "cancelled",
                name="callbackstatus",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("claimed_by", sa.Integer(), nullable=True),
        sa.Column("operator_attempt_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["attempt_id"],
            ["attempts.id"],
            name=op.f("fk_callback_requests_attempt_id_attempts"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_callback_requests_campaign_id_campaigns"),
        ),
        sa.ForeignKeyConstraint(
            ["claimed_by"], ["users.id"], name=op.f("fk_callback_requests_claimed_by_users")
        ),
        sa.ForeignKeyConstraint(
            ["operator_attempt_id"],
            ["attempts.id"],
            name=op.f("fk_callback_requests_operator_attempt_id_attempts"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["persons.id"],
            name=op.f("fk_callback_requests_person_id_persons"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_callback_requests")),
    )
    with op.batch_alter_table("callback_requests", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_callback_requests_campaign_id"), ["campaign_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_callback_requests_person_id"), ["person_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_callback_requests_status"), ["status"], unique=False)

    op.create_table(
        "handoffs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=True),
        sa.Column("attempt_id", sa.Integer(), nullable=True),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("sealed_notes", sa.LargeBinary(), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "open",
                "taken",
                "closed",
                name="handoffstatus",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("assigned_to", sa.Integer(), nullable=True),
        sa.Column("sealed_staff_notes", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["assigned_to"], ["users.id"], name=op.f("fk_handoffs_assigned_to_users")
        ),
        sa.ForeignKeyConstraint(
            ["attempt_id"],
            ["attempts.id"],
            name=op.f("fk_handoffs_attempt_id_attempts"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["campaign_id"], ["campaigns.id"], name=op.f("fk_handoffs_campaign_id_campaigns")
        ),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f("fk_handoffs_created_by_users")
        ),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["persons.id"],
            name=op.f("fk_handoffs_person_id_persons"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_handoffs")),
    )
    with op.batch_alter_table("handoffs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_handoffs_campaign_id"), ["campaign_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_handoffs_person_id"), ["person_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_handoffs_status"), ["status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("handoffs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_handoffs_status"))
        batch_op.drop_index(batch_op.f("ix_handoffs_person_id"))
        batch_op.drop_index(batch_op.f("ix_handoffs_campaign_id"))

    op.drop_table("handoffs")
    with op.batch_alter_table("callback_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_callback_requests_status"))
        batch_op.drop_index(batch_op.f("ix_callback_requests_person_id"))
        batch_op.drop_index(batch_op.f("ix_callback_requests_campaign_id"))

    op.drop_table("callback_requests")
    with op.batch_alter_table("attempts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_attempts_phone_id"))
        batch_op.drop_index(batch_op.f("ix_attempts_person_id"))
        batch_op.drop_index(batch_op.f("ix_attempts_outcome_code"))
        batch_op.drop_index("ix_attempts_follow_up")
        batch_op.drop_index("ix_attempts_due")
        batch_op.drop_index(batch_op.f("ix_attempts_carrier_ref"))
        batch_op.drop_index(batch_op.f("ix_attempts_campaign_id"))

    op.drop_table("attempts")
    with op.batch_alter_table("receivables", schema=None) as batch_op:
        batch_op.drop_index("ix_receivables_item")
        batch_op.drop_index(batch_op.f("ix_receivables_campaign_id"))

    op.drop_table("receivables")
    with op.batch_alter_table("phones", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_phones_person_id"))
        batch_op.drop_index(batch_op.f("ix_phones_number_digest"))
        batch_op.drop_index(batch_op.f("ix_phones_campaign_id"))

    op.drop_table("phones")
    with op.batch_alter_table("persons", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_persons_status"))
        batch_op.drop_index("ix_persons_campaign_ref")
        batch_op.drop_index(batch_op.f("ix_persons_campaign_id"))

    op.drop_table("persons")
    with op.batch_alter_table("results_exports", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_results_exports_campaign_id"))

    op.drop_table("results_exports")
    with op.batch_alter_table("import_batches", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_import_batches_campaign_id"))

    op.drop_table("import_batches")
    with op.batch_alter_table("exclusion_entries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_exclusion_entries_ref_digest"))
        batch_op.drop_index(batch_op.f("ix_exclusion_entries_list_id"))

    op.drop_table("exclusion_entries")
    op.drop_table("users")
    with op.batch_alter_table("exclusion_lists", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_exclusion_lists_active"))

    op.drop_table("exclusion_lists")
    with op.batch_alter_table("erasure_certificates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_erasure_certificates_campaign_id"))

    op.drop_table("erasure_certificates")
    op.drop_table("do_not_call")
    with op.batch_alter_table("daily_aggregates", schema=None) as batch_op:
        batch_op.drop_index("ix_daily_aggregates_key")
        batch_op.drop_index(batch_op.f("ix_daily_aggregates_campaign_id"))

    op.drop_table("daily_aggregates")
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_campaigns_status"))

    op.drop_table("campaigns")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_events_action"))

    op.drop_table("audit_events")
