"""Fixtures shared by the application tests."""

import pytest

from attnkit.apps.summarize import models


@pytest.fixture(scope="session")
def encoder():
    """all-MiniLM-L6-v2 as the apps load it, once for the QA and summarize tests."""
    return models.sentence_encoder()
