"""Our driver and our simulator each speak to pymodbus, over TCP and over a pty pair (RTU):
the protocol code on both sides of our tests is checked against an independent implementation."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from drivers.modbus import BusPool, ModbusDriver
from edge_config.models import ModbusRtuDevice, ModbusTcpDevice
from simulators.modbus_rtu import ModbusRtuSimulator
from simulators.modbus_server import ModbusSimulator, ModbusTcpSimulator, StaticModel
from tests.integration.rtu import pty_pair
from tests.ports import free_port

pytestmark = pytest.mark.integration

REGISTERS = [0x42F6, 0xE979, 0xFFFF, 0xFFFE, 0x4142, 0x4300, 7, 0x8001]
TAGS = [
    {"name": "f", "address": "hr:10", "type": "float32"},
    {"name": "i", "address": "hr:12", "type": "int32"},
    {"name": "s", "address": "hr:14", "type": "string", "length": 2},
    {"name": "u", "address": "hr:16", "type": "uint16"},
    {"name": "b15", "address": "hr:17", "type": "bool", "bit": 15},
    {"name": "b0", "address": "hr:17", "type": "bool", "bit": 0},
    {"name": "gone", "address": "hr:30", "type": "uint16"},  # not served: refused
]


def pymodbus_device() -> SimDevice:
    return SimDevice(id=1, simdata=[SimData(10, values=REGISTERS, datatype=DataType.REGISTERS)])


def check(readings: dict[str, Any]) -> None:
    assert readings["f"].value == pytest.approx(123.456, rel=1e-7)
    assert [readings[n].value for n in ("i", "s", "u", "b15", "b0")] == [-2, "ABC", 7, True, True]
    assert readings["gone"].quality == "bad" and readings["gone"].error.startswith("exception 2")


async def test_our_tcp_driver_reads_a_pymodbus_server() -> None:
    port = free_port()
    server = ModbusTcpServer(pymodbus_device(), address=("127.0.0.1", port))
    await server.serve_forever(background=True)
    try:
        dev = ModbusTcpDevice.model_validate(
            {"id": "d", "driver": "modbus_tcp", "connection": {"host": "127.0.0.1", "port": port}, "tags": TAGS}
        )
        drv = ModbusDriver(dev, BusPool())
        await drv.connect()
        try:
            check({r.tag: r for r in await drv.read()})
        finally:
            await drv.close()
    finally:
        await server.shutdown()


async def test_our_rtu_driver_reads_a_pymodbus_serial_server(tmp_path: Path) -> None:
    with pty_pair(tmp_path) as (master, slave):
        server = ModbusSerialServer(pymodbus_device(), framer=FramerType.RTU, port=slave, baudrate=19200)
        await server.serve_forever(background=True)
        try:
            dev = ModbusRtuDevice.model_validate(
                {"id": "d", "driver": "modbus_rtu", "connection": {"port": master, "baudrate": 19200}, "tags": TAGS}
            )
            drv = ModbusDriver(dev, BusPool())
            await drv.connect()
            try:
                for _ in range(3):
                    check({r.tag: r for r in await drv.read()})
            finally:
                await drv.close()
        finally:
            await server.shutdown()


SIM_TAGS = [
    {"name": "f", "address": "hr:10", "type": "float32", "byte_order": "CDAB"},
    {"name": "c", "address": "co:3", "type": "bool"},
    {"name": "d", "address": "di:0", "type": "bool"},
    {"name": "i", "address": "ir:0", "type": "int16"},
]
SIM_VALUES = {"f": 123.456, "c": True, "d": True, "i": -2}


async def pymodbus_reads(client: Any, sim: ModbusSimulator) -> None:
    rr = await client.read_holding_registers(10, count=2, device_id=1)
    assert rr.registers == [0xE979, 0x42F6]
    rr = await client.read_coils(3, count=1, device_id=1)
    assert rr.bits[0] is True
    rr = await client.read_discrete_inputs(0, count=1, device_id=1)
    assert rr.bits[0] is True
    rr = await client.read_input_registers(0, count=1, device_id=1)
    assert rr.registers == [0xFFFE]
    rr = await client.read_holding_registers(11, count=2, device_id=1)  # hr:12 is not mapped
    assert rr.isError() and rr.exception_code == 2
    sim.faults().refuse("hr:10", 4)
    rr = await client.read_holding_registers(10, count=1, device_id=1)
    assert rr.isError() and rr.exception_code == 4


async def test_pymodbus_tcp_client_reads_our_simulator() -> None:
    port = free_port()
    async with ModbusTcpSimulator(StaticModel(SIM_TAGS, SIM_VALUES), port=port) as sim:
        client = AsyncModbusTcpClient("127.0.0.1", port=port, retries=0, reconnect_delay=0, timeout=2)
        assert await client.connect()
        try:
            await pymodbus_reads(client, sim)
        finally:
            client.close()


async def test_pymodbus_serial_client_reads_our_rtu_simulator(tmp_path: Path) -> None:
    with pty_pair(tmp_path) as (master, slave):
        async with ModbusRtuSimulator(StaticModel(SIM_TAGS, SIM_VALUES), port=slave, baudrate=19200) as sim:
            client = AsyncModbusSerialClient(master, baudrate=19200, retries=0, reconnect_delay=0, timeout=2)
            assert await client.connect()
            try:
                await asyncio.sleep(0.05)
                await pymodbus_reads(client, sim)
            finally:
                client.close()
