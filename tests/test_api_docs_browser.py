"""The API docs page in a real browser, under the site's content policy."""

import os

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"


def test_swagger_ui_renders_every_operation_without_a_content_policy_violation(browser,
                                                                              live_server):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    messages = []
    page.on("console", lambda message: messages.append(message.text))
    try:
        response = page.goto(f"{live_server.url}/api/docs/")
        assert "style-src 'self'" in response.headers["content-security-policy"]
        page.wait_for_selector(".opblock", timeout=20_000)
        operations = page.locator(".opblock").count()
        assert operations >= 20
    finally:
        context.close()
    violations = [text for text in messages if "Content Security Policy" in text]
    assert violations == []
