"""HL7 v2 adapter: MLLP listener, inbound mapping to canonical commands, outbound status.

Public entry points:

* :func:`adapters.hl7v2.listener.run_listener`: the ``v2v serve`` background task;
* :class:`adapters.hl7v2.inbound.InboundHandler`: bytes in, ACK bytes out (one transaction);
* :func:`adapters.hl7v2.outbound.transport`: the outbox relay transport for HL7 v2 sites;
* :class:`adapters.hl7v2.mllp.MllpClient`: a sender with retry and MSA-2 correlation.
"""
