from __future__ import annotations

from sqlalchemy import exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from api import lookup
from api.content import to_text
from api.errors import Conflict, Unprocessable
from api.refs import uri
from api.templates.schemas import TemplateCreate, TemplateRead, TemplateUpdate
from shared.models import Task, TaskTemplate


def read(template: TaskTemplate) -> TemplateRead:
    assert template.id is not None
    return TemplateRead(
        uri=uri("task_templates", template.id),
        id=template.id,
        label=template.label,
        content=template.content,
    )


async def get(session: AsyncSession, ref: str | int) -> TaskTemplate:
    return await lookup.template(session, ref)


async def list_uris(session: AsyncSession) -> list[str]:
    ids = await session.scalars(select(col(TaskTemplate.id)).order_by(col(TaskTemplate.id)))
    return [uri("task_templates", i) for i in ids]


async def _check_label_free(session: AsyncSession, label: str, own_id: int | None = None) -> None:
    if label.isdigit():
        raise Unprocessable("A template label cannot be all digits (it would read as an id)")
    query = select(col(TaskTemplate.id)).where(col(TaskTemplate.label) == label)
    found = await session.scalar(query)
    if found is not None and found != own_id:
        raise Conflict(f"Task template '{label}' already exists")


async def create(session: AsyncSession, data: TemplateCreate) -> TaskTemplate:
    await _check_label_free(session, data.label)
    if data.content is None:
        raise Unprocessable("content: a template needs content")
    template = TaskTemplate(label=data.label, content=to_text(data.content))
    session.add(template)
    await session.flush()
    return template


async def update(session: AsyncSession, template: TaskTemplate, data: TemplateUpdate) -> None:
    if data.label is not None and data.label != template.label:
        await _check_label_free(session, data.label, template.id)
        template.label = data.label
    if "content" in data.model_fields_set and data.content is not None:
        template.content = to_text(data.content)
    await session.flush()


async def delete(session: AsyncSession, template: TaskTemplate) -> None:
    in_use = await session.scalar(select(exists().where(col(Task.template_id) == template.id)))
    if in_use:
        count = await session.scalar(
            select(func.count()).select_from(Task).where(col(Task.template_id) == template.id)
        )
        raise Conflict(f"Task template '{template.label}' is used by {count} task(s)")
    await session.delete(template)
    await session.flush()
