"""Webhook subscriptions (filled in by the webhooks feature)."""

from fastapi import APIRouter

router = APIRouter(prefix="/v1/subscription", tags=["webhooks"])
