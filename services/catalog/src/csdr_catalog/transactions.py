"""The STAC Transaction extension as the spec reads (https://github.com/stac-api-extensions/
transaction), where stac-fastapi-pgstac reads it more narrowly:

- POST and PUT take a *partial* Item: an item without `links` is accepted (the server makes the
  links); upstream's request models require them and answer 400 "links: Field required";
- a created Item is answered as `application/geo+json` (upstream: `application/json`);
- PUT, PATCH and DELETE answer 204 No Content, one of the success codes the spec lists (200, 202,
  204) and the one stac-api-validator checks for; upstream answers 200 with a body;
- DELETE of an item or a collection also removes its files from the asset store, and PUT or
  PATCH the files the item no longer names (csdr_catalog.downloads).

`TransactionExtension` is subclassed because its request models are fixed in the two methods
that register the POST and PUT routes; `Extensions` because it builds the extension.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import anyio.to_thread
import attr
from fastapi import Body, Request
from pydantic import model_validator
from stac_fastapi.api.models import CollectionUri, GeoJSONResponse, ItemUri, JSONResponse
from stac_fastapi.api.routes import create_async_endpoint
from stac_fastapi.extensions import BulkTransactionExtension, TransactionExtension
from stac_fastapi.pgstac.models.extensions import Extensions
from stac_fastapi.pgstac.transactions import BulkTransactionsClient, TransactionsClient
from stac_fastapi.types.extension import ApiExtension
from stac_pydantic import Item, ItemCollection
from starlette.responses import Response

from csdr_catalog.downloads import AssetRoots, asset_hrefs


class PartialItem(Item):
    """A STAC Item as a client may send it: `links` may be left out."""

    @model_validator(mode="before")
    @classmethod
    def _links_default(cls, data: Any) -> Any:
        if isinstance(data, dict) and "links" not in data:
            return {**data, "links": []}
        return data


class PartialItemCollection(ItemCollection):
    """An ItemCollection of partial Items."""

    features: Sequence[PartialItem]


@attr.s
class PostItem(CollectionUri):
    """POST /collections/{collection_id}/items: one partial Item or an ItemCollection of them."""

    item: Annotated[PartialItem | PartialItemCollection, Body()] = attr.ib(default=None)


@attr.s
class PutItem(ItemUri):
    """PUT /collections/{collection_id}/items/{item_id}: a partial Item."""

    item: Annotated[PartialItem, Body()] = attr.ib(default=None)


NO_CONTENT = 204


class CatalogTransactionsClient(TransactionsClient):
    """Upstream's writes, answering 204 where upstream answers 200 with a body."""

    async def _asset_hrefs(self, request: Request, collection_id: str, item_id: str) -> list[str]:
        # On the writers' connection: a replica's copy may lag behind the write just made.
        async with request.app.state.get_connection(request, "w") as conn:
            item = await conn.fetchval("SELECT pgstac.get_item($1, $2)", item_id, collection_id)
        return asset_hrefs(item)

    async def _replacing(self, write: Any, **kwargs: Any) -> Response:
        """Run an item write, then delete the files the item no longer names."""
        request, collection_id, item_id = (
            kwargs[k] for k in ("request", "collection_id", "item_id")
        )
        before = await self._asset_hrefs(request, collection_id, item_id)
        await write(**kwargs)
        after = set(await self._asset_hrefs(request, collection_id, item_id))
        roots: AssetRoots = request.app.state.asset_roots
        gone = [h for h in before if h not in after]
        await anyio.to_thread.run_sync(roots.remove, collection_id, item_id, gone)
        return Response(status_code=NO_CONTENT)

    async def update_item(self, **kwargs: Any) -> Response:
        """Replace an item; the files it no longer names leave the asset store."""
        return await self._replacing(super().update_item, **kwargs)

    async def patch_item(self, **kwargs: Any) -> Response:
        """Patch an item; the files it no longer names leave the asset store."""
        return await self._replacing(super().patch_item, **kwargs)

    async def delete_item(
        self, item_id: str, collection_id: str, request: Request, **kwargs: Any
    ) -> Response:
        """Delete an item, then its files in the asset store."""
        hrefs = await self._asset_hrefs(request, collection_id, item_id)
        await super().delete_item(item_id, collection_id, request, **kwargs)
        roots: AssetRoots = request.app.state.asset_roots
        await anyio.to_thread.run_sync(roots.remove, collection_id, item_id, hrefs)
        return Response(status_code=NO_CONTENT)

    async def delete_collection(
        self, collection_id: str, request: Request, **kwargs: Any
    ) -> Response:
        """Delete a collection (and its items), then its folder in the asset store."""
        deleted = await super().delete_collection(collection_id, request, **kwargs)
        roots: AssetRoots = request.app.state.asset_roots
        await anyio.to_thread.run_sync(roots.remove_collection, collection_id)
        return deleted


@attr.s
class CatalogTransactionExtension(TransactionExtension):
    """Upstream's routes, with partial Items on POST and PUT."""

    def register_create_item(self) -> None:
        """POST /collections/{collection_id}/items."""
        self.router.add_api_route(
            name="Create Item",
            path="/collections/{collection_id}/items",
            status_code=201,
            response_class=GeoJSONResponse,
            methods=["POST"],
            endpoint=create_async_endpoint(self.client.create_item, PostItem),
            dependencies=self.route_dependencies,
        )

    def register_update_item(self) -> None:
        """PUT /collections/{collection_id}/items/{item_id}."""
        self.router.add_api_route(
            name="Update Item",
            path="/collections/{collection_id}/items/{item_id}",
            status_code=NO_CONTENT,
            response_class=self.response_class,
            methods=["PUT"],
            endpoint=create_async_endpoint(self.client.update_item, PutItem),
            dependencies=self.route_dependencies,
        )


@dataclass
class CatalogExtensions(Extensions):
    """stac-fastapi-pgstac's extensions, with our transaction extension."""

    @property
    def transaction(self) -> list[ApiExtension]:
        """The transaction extensions, when enabled."""
        if not self.settings.enable_transactions_extensions:
            return []
        return [
            CatalogTransactionExtension(
                client=CatalogTransactionsClient(),
                settings=self.settings,
                response_class=JSONResponse,
            ),
            BulkTransactionExtension(client=BulkTransactionsClient()),
        ]
