#!/usr/bin/env node
// An OCPP 2.0.1 charging station built on ocpp-rpc in strict mode: a peer we did not write, for unstuck's tests.
//
//   node station.js URL [--password PW] [--stay] [--no-script] [--id-token TAG] [--answers JSON]
//                       [--call-timeout-ms N]
//
// URL is the whole station URL (ws://host:port/ocpp/ST1); its last path segment is the identity. It sends
// BootNotification, StatusNotification, Authorize, TransactionEvent Started/Updated/Ended and Heartbeat, and
// answers RequestStartTransaction, RequestStopTransaction, UnlockConnector, TriggerMessage and
// GetTransactionStatus (--answers '{"UnlockConnector": {"status": "UnlockFailed"}}' replaces a default answer).
// With --stay it stays connected after the script until standard input ends; each stdin line
// {"id": 1, "call": "Heartbeat", "params": {}} sends a Call.
//
// Standard output: one JSON line per exchange ({"dir": "out"|"in", "action", "request", "response"|"error"})
// and per event ({"event": "open"|"strictValidationFailure"|"close"|"done", ...}).
// Exit status: 0; 2 after any strict-mode validation failure, either direction; 1 if it could not run.
'use strict';

const { randomUUID } = require('node:crypto');
const readline = require('node:readline');
const { RPCClient } = require('ocpp-rpc');

const ENERGY = 'Energy.Active.Import.Register';

function parseArgs(argv) {
    const opts = { script: true, stay: false, idToken: 'RPCTAG', answers: {}, callTimeoutMs: 10000 };
    const rest = [];
    for (let i = 0; i < argv.length; i++) {
        const arg = argv[i];
        if (arg === '--password') opts.password = argv[++i];
        else if (arg === '--stay') opts.stay = true;
        else if (arg === '--no-script') opts.script = false;
        else if (arg === '--id-token') opts.idToken = argv[++i];
        else if (arg === '--answers') opts.answers = JSON.parse(argv[++i]);
        else if (arg === '--call-timeout-ms') opts.callTimeoutMs = Number(argv[++i]);
        else rest.push(arg);
    }
    if (rest.length !== 1) throw Error('usage: node station.js URL [--password PW] [--stay] [--no-script] ...');
    const url = new URL(rest[0]);
    const slash = url.pathname.lastIndexOf('/');
    opts.identity = decodeURIComponent(url.pathname.slice(slash + 1));
    url.pathname = url.pathname.slice(0, slash);
    opts.endpoint = url.toString().replace(/\/$/, '');
    return opts;
}

function emit(line) {
    process.stdout.write(JSON.stringify(line) + '\n');
}

function now() {
    return new Date().toISOString();
}

function energy(wh, context) {
    return [{ timestamp: now(), sampledValue: [{ value: wh, context, measurand: ENERGY, unitOfMeasure: { unit: 'Wh' } }] }];
}

function errorLine(err) {
    return { code: err.rpcErrorCode ?? err.code ?? err.name, message: err.message, details: err.details ?? {} };
}

async function main() {
    const opts = parseArgs(process.argv.slice(2));
    const client = new RPCClient({
        endpoint: opts.endpoint,
        identity: opts.identity,
        password: opts.password,
        protocols: ['ocpp2.0.1'],
        strictMode: true,
        reconnect: false,
        callTimeoutMs: opts.callTimeoutMs,
    });
    const transactions = new Map(); // transactionId -> {evseId, seqNo: the next one}
    const followUps = new Map(); // messageId of an inbound Call -> what to send once its answer is out
    let meterWh = 0;

    client.on('strictValidationFailure', (ev) => {
        process.exitCode = 2;
        emit({
            event: 'strictValidationFailure',
            method: ev.method,
            outbound: ev.outbound,
            isCall: ev.isCall,
            message: ev.error?.message,
            params: ev.params,
            result: ev.result,
        });
    });
    client.on('badMessage', (ev) => emit({ event: 'badMessage', message: ev.error?.message }));
    // ocpp-rpc emits 'response' just before it writes an answer: send a follow-up only after that.
    client.on('response', ({ outbound, payload }) => {
        const followUp = outbound && followUps.get(payload[1]);
        if (followUp) {
            followUps.delete(payload[1]);
            if (payload[0] === 3) setImmediate(followUp);
        }
    });

    async function call(action, params, id) {
        const line = { dir: 'out', action, request: params };
        if (id !== undefined) line.id = id;
        try {
            line.response = await client.call(action, params);
        } catch (err) {
            line.error = errorLine(err);
        }
        emit(line);
        return line;
    }

    async function transactionEvent(eventType, transactionId, triggerReason, extra) {
        const tx = transactions.get(transactionId) ?? { evseId: extra.evse?.id ?? 1, seqNo: 0 };
        if (eventType === 'Started') transactions.set(transactionId, tx);
        const params = {
            eventType,
            timestamp: now(),
            triggerReason,
            seqNo: tx.seqNo++,
            ...extra,
            transactionInfo: { transactionId, ...extra.transactionInfo },
        };
        if (eventType === 'Ended') transactions.delete(transactionId);
        return call('TransactionEvent', params);
    }

    function status(connectorStatus, evseId = 1, connectorId = 1) {
        return call('StatusNotification', { timestamp: now(), connectorStatus, evseId, connectorId });
    }

    function openOn(evseId) {
        for (const [transactionId, tx] of transactions) {
            if (evseId === undefined || tx.evseId === evseId) return transactionId;
        }
        return undefined;
    }

    // Answers the CSMS's Calls: the default (what a station would answer from its state) unless --answers says.
    function handle(action, decide) {
        client.handle(action, async ({ messageId, params }) => {
            const [answer, followUp] = decide(params);
            const response = opts.answers[action] ?? answer;
            if (followUp && (response.status === undefined || response.status === 'Accepted')) {
                followUps.set(messageId, followUp);
            }
            emit({ dir: 'in', action, request: params, response });
            return response;
        });
    }

    handle('RequestStartTransaction', (params) => {
        const evseId = params.evseId ?? 1;
        if (openOn(evseId) !== undefined) return [{ status: 'Rejected' }];
        const started = () =>
            transactionEvent('Started', randomUUID(), 'RemoteStart', {
                transactionInfo: { chargingState: 'EVConnected', remoteStartId: params.remoteStartId },
                evse: { id: evseId, connectorId: 1 },
                idToken: params.idToken,
                meterValue: energy(meterWh, 'Transaction.Begin'),
            });
        return [{ status: 'Accepted' }, started];
    });
    handle('RequestStopTransaction', (params) => {
        if (!transactions.has(params.transactionId)) return [{ status: 'Rejected' }];
        const ended = () =>
            transactionEvent('Ended', params.transactionId, 'RemoteStop', {
                transactionInfo: { chargingState: 'Idle', stoppedReason: 'Remote' },
                meterValue: energy(meterWh, 'Transaction.End'),
            });
        return [{ status: 'Accepted' }, ended];
    });
    handle('UnlockConnector', (params) => {
        if (params.evseId !== 1 || params.connectorId !== 1) return [{ status: 'UnknownConnector' }];
        return [{ status: openOn(1) === undefined ? 'Unlocked' : 'OngoingAuthorizedTransaction' }];
    });
    handle('TriggerMessage', (params) => {
        const evseId = params.evse?.id;
        switch (params.requestedMessage) {
            case 'StatusNotification':
                return [{ status: 'Accepted' }, () => status(openOn(1) === undefined ? 'Available' : 'Occupied')];
            case 'Heartbeat':
                return [{ status: 'Accepted' }, () => call('Heartbeat', {})];
            case 'TransactionEvent': {
                const transactionId = openOn(evseId);
                if (transactionId === undefined) return [{ status: 'Rejected' }];
                const updated = () =>
                    transactionEvent('Updated', transactionId, 'Trigger', { meterValue: energy(meterWh, 'Trigger') });
                return [{ status: 'Accepted' }, updated];
            }
            default:
                return [{ status: 'NotImplemented' }];
        }
    });
    handle('GetTransactionStatus', (params) => {
        const answer = { messagesInQueue: false };
        if (params.transactionId !== undefined) answer.ongoingIndicator = transactions.has(params.transactionId);
        return [answer];
    });

    const closed = new Promise((resolve) => client.once('close', resolve));
    try {
        await client.connect();
    } catch (err) {
        emit({ event: 'connectFailed', message: err.message, status: err.code });
        process.exitCode = 1;
        return;
    }
    emit({ event: 'open', protocol: client.protocol, identity: opts.identity });

    if (opts.script) {
        const idToken = { idToken: opts.idToken, type: 'ISO14443' };
        const transactionId = randomUUID();
        await call('BootNotification', { chargingStation: { vendorName: 'ocpp-rpc', model: 'strict' }, reason: 'PowerUp' });
        await status('Available');
        await call('Authorize', { idToken });
        meterWh = 1000;
        await transactionEvent('Started', transactionId, 'Authorized', {
            transactionInfo: { chargingState: 'EVConnected' },
            evse: { id: 1, connectorId: 1 },
            idToken,
            meterValue: energy(meterWh, 'Transaction.Begin'),
        });
        await status('Occupied');
        meterWh = 2500;
        await transactionEvent('Updated', transactionId, 'ChargingStateChanged', {
            transactionInfo: { chargingState: 'Charging' },
            meterValue: energy(meterWh, 'Sample.Periodic'),
        });
        meterWh = 4000;
        await transactionEvent('Ended', transactionId, 'StopAuthorized', {
            transactionInfo: { chargingState: 'Idle', stoppedReason: 'Local' },
            idToken,
            meterValue: energy(meterWh, 'Transaction.End'),
        });
        await status('Available');
        await call('Heartbeat', {});
    }

    if (opts.stay) {
        const commands = readline.createInterface({ input: process.stdin });
        const stdinEnded = new Promise((resolve) => commands.once('close', resolve));
        commands.on('line', (text) => {
            if (!text.trim()) return;
            const command = JSON.parse(text);
            if (command.answers) Object.assign(opts.answers, command.answers);
            if (command.call) call(command.call, command.params ?? {}, command.id);
        });
        emit({ event: 'ready' });
        await Promise.race([stdinEnded, closed]);
        commands.close();
    }
    const { code, reason } = await client.close({ code: 1000, reason: 'done', awaitPending: true });
    emit({ event: 'close', code, reason });
}

main()
    .catch((err) => {
        emit({ event: 'fatal', message: err.stack ?? String(err) });
        process.exitCode = 1;
    })
    .finally(() => {
        emit({ event: 'done', exitCode: process.exitCode ?? 0 });
        process.stdin.destroy(); // without --stay nobody reads it, and an open pipe would keep node alive
    });
