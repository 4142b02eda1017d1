"""G2P Connect in the orchestrator: the servicer, the callback worker and the mapper client, from settings."""

from __future__ import annotations

import asyncio
from typing import Any

from gpo.v1 import g2p_connect_service_pb2, g2p_connect_service_pb2_grpc

from gpo_server.api.auth import Authenticator
from gpo_server.config import Settings
from gpo_server.g2p_connect import config
from gpo_server.g2p_connect.callbacks import CallbackWorker
from gpo_server.g2p_connect.mapper import MapperClient
from gpo_server.g2p_connect.service import G2pConnectService
from gpo_server.g2p_connect.storage import G2pStore
from gpo_server.storage.store import Store
from gpo_server.submission import Submissions

SERVICE_NAME = g2p_connect_service_pb2.DESCRIPTOR.services_by_name["G2pConnectService"].full_name


class G2pConnect:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        submissions: Submissions,
        auth: Authenticator,
    ) -> None:
        self.settings = config.load(settings.g2p_config or None, settings.data_dir)
        self.callbacks = CallbackWorker(G2pStore(store), self.settings)
        self.mapper = MapperClient(self.settings.mapper, self.settings.signer)
        self.service = G2pConnectService(store, submissions, auth, self.settings, self.callbacks, self.mapper)

    @staticmethod
    def service_name() -> str:
        return SERVICE_NAME

    def add_to(self, server: Any) -> None:
        g2p_connect_service_pb2_grpc.add_G2pConnectServiceServicer_to_server(  # type: ignore[no-untyped-call]
            self.service, server
        )

    async def run(self, stop: asyncio.Event) -> None:
        """The callback worker, until stop; then the mapper's connections close."""
        try:
            await self.callbacks.run(stop)
        finally:
            await self.mapper.close()
            await self.service.keymanager.close()
